"""Exactly-once: one message per idempotency key, and one consume per message.

Three rules, each a list of violations:

- ``key_messages``: an idempotency key names at most one ``message_id`` among every message the history saw
  (returned by an ok receive, consumed by an ack, or drained). Two messages for one key means a retried enqueue
  was enqueued twice. A message's key is the key of the ok enqueue that returned its ``message_id``, else the key(s)
  of the enqueue attempts with its body. (Valid while the test is shorter than the queue's dedup window.)
- ``key_enqueue_ids``: every ok enqueue with the same key answered the same ``message_id``.
- ``multi_consumed``: each ``message_id`` is consumed at most once: a consume is an ok ``acked`` outcome of a
  distinct receipt, or a drained message (see :mod:`chaos.check_queue`). A delivery acked after its lease ran out
  answers ``stale`` and is not a consume.

``valid`` iff all three are empty.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from chaos.check_queue import consumption
from chaos.history import Event, Operation, as_operations, deliveries, enqueue_value


@dataclass(frozen=True)
class OnceResult:
    valid: bool
    keys: int
    messages_seen: int
    consumes: int
    #: key -> the distinct message ids seen for it (only keys with more than one)
    key_messages: dict[str, list[str]]
    #: key -> the distinct message ids ok enqueues answered for it (only keys with more than one)
    key_enqueue_ids: dict[str, list[str]]
    #: message id -> its consumes, described (only messages consumed more than once)
    multi_consumed: dict[str, list[str]]


def check_exactly_once(history: Sequence[Event] | Sequence[Operation]) -> OnceResult:
    ops = as_operations(history)
    keys_by_body: dict[str, set[str]] = defaultdict(set)
    key_by_id: dict[str, str] = {}
    enqueue_ids: dict[str, set[str]] = defaultdict(set)
    for op in ops:
        if op.f != "enqueue":
            continue
        v = enqueue_value(op)
        if v.key is None:
            continue
        keys_by_body[v.body].add(v.key)
        if v.message_id is not None:
            enqueue_ids[v.key].add(v.message_id)
            key_by_id[v.message_id] = v.key

    seen: dict[str, str] = {}  # message id -> body
    for op in ops:
        if op.f in ("receive", "drain"):
            for d in deliveries(op):
                seen[d.message_id] = d.body
    cons = consumption(ops)
    for c in cons.consumes:
        seen[c.message_id] = c.body

    ids_by_key: dict[str, set[str]] = defaultdict(set)
    for mid, body in seen.items():
        keys = {key_by_id[mid]} if mid in key_by_id else keys_by_body.get(body, set())
        for key in keys:
            ids_by_key[key].add(mid)

    consumed: dict[str, list[str]] = defaultdict(list)
    for c in cons.consumes:
        how = f"{c.source} by process {c.process} at index {c.index}" + (
            f" (receipt {c.receipt})" if c.receipt is not None else ""
        )
        consumed[c.message_id].append(how)

    key_messages = {k: sorted(ids) for k, ids in sorted(ids_by_key.items()) if len(ids) > 1}
    key_enqueue_ids = {k: sorted(ids) for k, ids in sorted(enqueue_ids.items()) if len(ids) > 1}
    multi = {mid: hows for mid, hows in sorted(consumed.items()) if len(hows) > 1}
    return OnceResult(
        valid=not key_messages and not key_enqueue_ids and not multi,
        keys=len(set(enqueue_ids) | {k for ks in keys_by_body.values() for k in ks}),
        messages_seen=len(seen),
        consumes=len(cons.consumes),
        key_messages=key_messages,
        key_enqueue_ids=key_enqueue_ids,
        multi_consumed=multi,
    )
