"""A deliberately simple reference model of the queue state machine, for differential tests.

The model takes the same inputs as ``QueueStateMachine`` (an index, the entry's ``now_ms`` and its commands)
and keeps plain Python dicts: no KV, no msgpack, no counters that could drift (counts are recomputed from the
messages on every read), no laziness tricks beyond the one the contract prescribes. Rules are written the
obvious way; where the contract leaves an order open the model follows the documented one:

- the clock is ``max(clock, now_ms)`` (stamps clamped to 2**52); an index at or below the applied one is skipped;
- an operation that is rejected leaves no trace (the model restores a deep copy), the others still apply;
- leases and delays that ended are settled when their queue is touched (its own operations, an operation on a
  queue it dead-letters into, deleting it, reads), oldest deadline first; a lease that ends or a nack with
  ``delivery_count >= max_deliveries`` moves the message to the dead-letter queue in the same entry;
- idempotency keys are compared by payload ``(body, attributes, delay)`` while ``now < expires``;
- an ack remembers its delivery for the queue's dedup window: the same receipt then settles as ``already_acked``;
- a receive with an attempt ID remembers its deliveries for ``RECEIVE_ATTEMPT_TTL_MS``: a retry returns those still
  leased under the same delivery, else it receives afresh (and remembers that, or forgets the attempt);
- transactions apply all their ops or none; records are looked at lazily: a pending one whose deadline passed is
  aborted (timeout, kept until ``deadline + retention``), a decided one is forgotten at its expiry.

Results are compared in a normal form (plain tuples). Receipts are opaque: the model issues identities
``(incarnation, seq, delivery)`` and learns which receipt string the real machine issued for each one
(``learn_receipts``); a string it never learned is malformed to the model.

``RandomWorkload`` at the end drives random (but adaptive: it reuses issued receipts) entry sequences for the
tests that compare stores rather than results.
"""

from __future__ import annotations

import copy
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from state_machine.commands import (
    AbortTxn,
    Ack,
    Barrier,
    BeginTxn,
    Command,
    CommitTxn,
    CreateQueue,
    DeleteQueue,
    Enqueue,
    Entry,
    Extend,
    Nack,
    NewMessage,
    Receive,
    StageTxn,
    Transact,
    TxnOp,
    fingerprint,
    txn_fingerprint,
)
from state_machine.config import QueueConfig
from state_machine.machine import AppliedEntry
from state_machine.results import (
    BarrierPassed,
    Delivery,
    Enqueued,
    QueueCreated,
    QueueDeleted,
    QueueInfo,
    Received,
    Rejected,
    Result,
    Settled,
    TxnOutcome,
)

# The limits, restated rather than imported: changing one should be a visible decision in two places.
MAX_VISIBILITY_TIMEOUT_MS = 12 * 3600 * 1000
MAX_DELAY_MS = 15 * 60 * 1000
MAX_DEDUP_WINDOW_MS = 30 * 24 * 3600 * 1000
MAX_MESSAGE_BYTES_LIMIT = 8 * 1024 * 1024
MAX_DELIVERIES = 1000
MAX_BATCH = 1000
MAX_RECEIVE = 1000
RECEIVE_ATTEMPT_TTL_MS = 5 * 60 * 1000
MAX_ATTEMPT_ID_LEN = 128
MAX_TXN_ID_LEN = 128
MAX_TXN_OPS = 100
MAX_TXN_ITEMS = 1000
TXN_TIMEOUT_RANGE = (1000, 15 * 60 * 1000)
TXN_RETENTION_RANGE = (1000, 365 * 24 * 3600 * 1000)
SETTLED_OK = ("acked", "nacked", "extended", "dead_lettered")
#: Stamps beyond this are clamped, so that clock + any allowed duration still fits in a u64.
MAX_CLOCK_MS = 1 << 52
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")

READY, LEASED, DELAYED = "ready", "leased", "delayed"

#: A receipt's identity: (queue incarnation, message seq, delivery number).
RId = tuple[int, int, int]
#: A result or a QueueInfo in normal form.
Norm = tuple[object, ...]
Payload = tuple[bytes, tuple[tuple[str, str], ...], int]


@dataclass
class Message:
    message_id: str
    body: bytes
    attributes: dict[str, str]
    enqueued_at_ms: int
    state: str
    delivery_count: int = 0
    due_ms: int = 0
    dead_lettered_from: str | None = None


@dataclass
class KnownKey:
    message_id: str
    seq: int
    payload: Payload
    expires_ms: int


@dataclass
class Queue:
    incarnation: int
    config: QueueConfig
    created_at_ms: int
    messages: dict[int, Message] = field(default_factory=dict)
    keys: dict[str, KnownKey] = field(default_factory=dict)
    #: seq -> (delivery, expires) of acked deliveries.
    acked: dict[int, tuple[int, int]] = field(default_factory=dict)
    #: attempt ID -> ([(seq, delivery)], expires) of receives with an attempt ID.
    attempts: dict[str, tuple[list[tuple[int, int]], int]] = field(default_factory=dict)
    next_seq: int = 1
    dead_lettered: int = 0
    enqueued_total: int = 0
    acked_total: int = 0

    def count(self, state: str) -> int:
        return sum(1 for m in self.messages.values() if m.state == state)

    def info(self, name: str) -> Norm:
        counts = (
            self.count(READY),
            self.count(LEASED),
            self.count(DELAYED),
            self.dead_lettered,
            self.enqueued_total,
            self.acked_total,
        )
        return (name, self.config, counts, self.created_at_ms)


@dataclass
class Txn:
    one_shot: bool
    status: str  # pending, committed, aborted
    retention_ms: int
    #: Pending: the deadline. Decided: when it is forgotten.
    due_ms: int
    fingerprint: bytes = b""
    #: Interactive: (fingerprint, ops) per stage call.
    stages: list[tuple[bytes, list[TxnOp]]] = field(default_factory=list)
    staged_ops: int = 0
    staged_items: int = 0
    decided_index: int | None = None
    reason: str | None = None
    results: tuple[Norm, ...] = ()
    failures: tuple[tuple[int, str, str | None], ...] = ()

    def outcome(self, tid: str, duplicate: bool) -> Norm:
        return (
            "txn",
            tid,
            self.status,
            self.decided_index,
            self.results,
            self.failures,
            self.reason,
            self.due_ms,
            self.staged_ops,
            duplicate,
        )


def _items(ops: Sequence[TxnOp]) -> int:
    return sum(len(op.messages) if isinstance(op, Enqueue) else len(op.receipts) for op in ops)


@dataclass
class ModelApplied:
    index: int
    results: tuple[Norm, ...]
    #: Per result, the identities of the receipts it issued (in delivery order).
    receipts: list[list[RId]]
    woken: frozenset[str]


def _rejected(code: str, field: str | None = None) -> Norm:
    return ("rejected", code, field)


def _payload(m: NewMessage) -> Payload:
    return (m.body, tuple(sorted(m.attributes.items())), m.delay_ms)


def _by_bytes(name: str) -> bytes:
    return name.encode()


class ReferenceModel:
    def __init__(self) -> None:
        self.applied = 0
        self.clock = 0
        self.next_incarnation = 1
        self.queues: dict[str, Queue] = {}
        self.txns: dict[str, Txn] = {}
        self._index = 0
        #: Receipt strings the real machine issued, and the identity each one names.
        self.receipts: dict[str, RId] = {}
        self._woken: set[str] = set()
        self._issued: list[RId] = []

    # entries
    def apply(self, index: int, now_ms: int, ops: Sequence[Command]) -> ModelApplied | None:
        if index <= self.applied:
            return None
        self.applied = self._index = index
        self.clock = max(self.clock, min(now_ms, MAX_CLOCK_MS))
        results: list[Norm] = []
        receipts: list[list[RId]] = []
        woken: set[str] = set()
        for op in ops:
            saved = copy.deepcopy((self.queues, self.next_incarnation, self.txns))
            self._woken, self._issued = set(), []
            result = self._op(op)
            if result[0] == "rejected":
                self.queues, self.next_incarnation, self.txns = saved
                receipts.append([])
            else:
                woken |= self._woken
                receipts.append(self._issued)
            results.append(result)
        return ModelApplied(index, tuple(results), receipts, frozenset(woken))

    def apply_garbage(self, index: int) -> ModelApplied | None:
        """An entry whose bytes do not decode: rejected whole; only the applied index moves."""
        if index <= self.applied:
            return None
        self.applied = index
        return ModelApplied(index, (_rejected("invalid_entry"),), [[]], frozenset())

    def learn_receipts(self, strings: Sequence[str], ids: Sequence[RId]) -> None:
        """Records which receipt string names which delivery; a string may never name two deliveries."""
        assert len(strings) == len(ids), (strings, ids)
        for s, rid in zip(strings, ids, strict=True):
            known = self.receipts.get(s)
            assert known is None or known == rid, f"receipt {s!r} names {known} and {rid}"
            self.receipts[s] = rid

    # reads: on a throwaway copy, at the clock
    def queue_info(self, name: str) -> Norm | None:
        view = copy.deepcopy(self)
        q = view._touch(name)
        return None if q is None else q.info(name)

    def list_queues(self) -> list[Norm]:
        view = copy.deepcopy(self)
        names = sorted(view.queues, key=_by_bytes)
        for name in names:
            view._touch(name)
        return [view.queues[name].info(name) for name in names]

    def transaction(self, tid: str) -> Norm | None:
        txn = self._txn_view(tid)
        return None if txn is None else txn.outcome(tid, False)

    # operations
    def _op(self, op: Command) -> Norm:
        if isinstance(op, CreateQueue):
            return self._create(op)
        if isinstance(op, DeleteQueue):
            return self._delete(op)
        if isinstance(op, Enqueue):
            return self._enqueue(op)
        if isinstance(op, Receive):
            return self._receive(op)
        if isinstance(op, Ack | Nack | Extend):
            return self._settle(op)
        if isinstance(op, Transact):
            return self._transact(op)
        if isinstance(op, BeginTxn):
            return self._begin(op)
        if isinstance(op, StageTxn):
            return self._stage(op)
        if isinstance(op, CommitTxn):
            return self._commit(op)
        if isinstance(op, AbortTxn):
            return self._abort(op)
        assert isinstance(op, Barrier)
        return ("barrier",)

    @staticmethod
    def config_error(name: str, c: QueueConfig) -> str | None:
        """The field at fault in a queue config, first in the documented order; None when it is valid."""
        if not NAME.fullmatch(name):
            return "queue"
        if not 0 < c.visibility_timeout_ms <= MAX_VISIBILITY_TIMEOUT_MS:
            return "visibility_timeout_s"
        if not 0 <= c.max_deliveries <= MAX_DELIVERIES:
            return "max_deliveries"
        if c.max_deliveries and c.dead_letter_queue is None:
            return "dead_letter_queue"
        if c.dead_letter_queue is not None:
            if not NAME.fullmatch(c.dead_letter_queue) or c.dead_letter_queue == name:
                return "dead_letter_queue"
            if not c.max_deliveries:
                return "max_deliveries"
        if c.max_length < 0:
            return "max_length"
        if not 0 < c.dedup_window_ms <= MAX_DEDUP_WINDOW_MS:
            return "dedup_window_s"
        if not 0 < c.max_message_bytes <= MAX_MESSAGE_BYTES_LIMIT:
            return "max_message_bytes"
        return None

    def _create(self, op: CreateQueue) -> Norm:
        bad = self.config_error(op.name, op.config)
        if bad is not None:
            return _rejected("invalid_argument", bad)
        existing = self.queues.get(op.name)
        if existing is not None:
            return ("created", False) if existing.config == op.config else _rejected("queue_exists", "config")
        dlq = op.config.dead_letter_queue
        if dlq is not None and dlq not in self.queues:
            return _rejected("dead_letter_queue_not_found", "dead_letter_queue")
        self.queues[op.name] = Queue(self.next_incarnation, op.config, self.clock)
        self.next_incarnation += 1
        return ("created", True)

    def _delete(self, op: DeleteQueue) -> Norm:
        if op.name not in self.queues:
            return _rejected("queue_not_found")
        if self._sources(op.name):
            return _rejected("queue_in_use")
        # A lease that already ended on its last delivery has left for the dead-letter queue (reads of that
        # queue already count it); deleting the source must not take it back.
        self._touch(op.name)
        del self.queues[op.name]
        return ("deleted",)

    def _enqueue(self, op: Enqueue) -> Norm:
        q = self._touch(op.queue)
        if q is None:
            return _rejected("queue_not_found")
        if not 1 <= len(op.messages) <= MAX_BATCH:
            return _rejected("invalid_argument", "messages")
        # First decide, for every message: a known key's original, the same as an earlier one of this batch,
        # or new. Any refusal refuses the whole batch.
        plan = self._plan_enqueue(q, op)
        if not isinstance(plan, list):
            return plan
        fresh = plan.count(None)
        depth = len(q.messages)
        if q.config.max_length and depth + fresh > q.config.max_length:
            return _rejected("queue_full")
        out: list[tuple[str, int, bool]] = []
        for m, step in zip(op.messages, plan, strict=True):
            if isinstance(step, tuple):
                out.append((step[0], step[1], True))
            elif isinstance(step, int):
                out.append((out[step][0], out[step][1], True))
            else:
                out.append((m.message_id, self._append(q, op.queue, m), False))
        return ("enqueued", tuple(out))

    def _plan_enqueue(self, q: Queue, op: Enqueue) -> list[tuple[str, int] | int | None] | Norm:
        """Per message: (message id, seq) of a known key's original, the index of an earlier message of this batch
        with the same key, or None (new); or the refusal of the whole batch."""
        plan: list[tuple[str, int] | int | None] = []
        first_with_key: dict[str, int] = {}
        for i, m in enumerate(op.messages):
            if len(m.body) > q.config.max_message_bytes:
                return _rejected("message_too_large", f"messages[{i}].body")
            if not 0 <= m.delay_ms <= MAX_DELAY_MS:
                return _rejected("invalid_argument", f"messages[{i}].delay_s")
            key = m.idempotency_key
            if key is not None:
                known = q.keys.get(key)
                if known is not None and self.clock < known.expires_ms:
                    if known.payload != _payload(m):
                        return _rejected("idempotency_key_conflict", f"messages[{i}].idempotency_key")
                    plan.append((known.message_id, known.seq))
                    continue
                if key in first_with_key:
                    j = first_with_key[key]
                    if _payload(op.messages[j]) != _payload(m):
                        return _rejected("idempotency_key_conflict", f"messages[{i}].idempotency_key")
                    plan.append(j)
                    continue
                first_with_key[key] = i
            plan.append(None)
        return plan

    def _append(self, q: Queue, queue: str, m: NewMessage) -> int:
        """Stores a new message; its seq."""
        now = self.clock
        seq = q.next_seq
        q.next_seq += 1
        if m.delay_ms:
            q.messages[seq] = Message(m.message_id, m.body, m.attributes, now, DELAYED, 0, now + m.delay_ms)
        else:
            q.messages[seq] = Message(m.message_id, m.body, m.attributes, now, READY)
            self._woken.add(queue)
        q.enqueued_total += 1
        if m.idempotency_key is not None:
            q.keys[m.idempotency_key] = KnownKey(m.message_id, seq, _payload(m), now + q.config.dedup_window_ms)
        return seq

    def _receive(self, op: Receive) -> Norm:
        q = self._touch(op.queue)
        if q is None:
            return _rejected("queue_not_found")
        if not 1 <= op.max_messages <= MAX_RECEIVE:
            return _rejected("invalid_argument", "max_messages")
        vt = q.config.visibility_timeout_ms if op.visibility_timeout_ms is None else op.visibility_timeout_ms
        if not 0 < vt <= MAX_VISIBILITY_TIMEOUT_MS:
            return _rejected("invalid_argument", "visibility_timeout_s")
        now = self.clock
        aid = op.receive_attempt_id
        if aid is not None:
            if not 1 <= len(aid) <= MAX_ATTEMPT_ID_LEN:
                return _rejected("invalid_argument", "receive_attempt_id")
            prior = q.attempts.get(aid)
            if prior is not None and now < prior[1]:
                again = [
                    seq
                    for seq, d in prior[0]
                    if seq in q.messages
                    and q.messages[seq].state == LEASED
                    and q.messages[seq].delivery_count == d
                    and q.messages[seq].due_ms > now
                ]
                if again:
                    return ("received", tuple(self._deliver(q, seq) for seq in again), None)
        deliveries: list[Norm] = []
        leased: list[tuple[int, int]] = []
        for seq in sorted(s for s, m in q.messages.items() if m.state == READY)[: op.max_messages]:
            m = q.messages[seq]
            m.state, m.delivery_count, m.due_ms = LEASED, m.delivery_count + 1, now + vt
            deliveries.append(self._deliver(q, seq))
            leased.append((seq, m.delivery_count))
        if aid is not None:
            if leased:
                q.attempts[aid] = (leased, now + RECEIVE_ATTEMPT_TTL_MS)
            else:
                q.attempts.pop(aid, None)
        if deliveries:
            return ("received", tuple(deliveries), None)
        pending = [m.due_ms for m in q.messages.values() if m.state != READY]
        return ("received", (), min(pending) if pending else None)

    def _deliver(self, q: Queue, seq: int) -> Norm:
        m = q.messages[seq]
        self._issued.append((q.incarnation, seq, m.delivery_count))
        return (
            m.message_id,
            seq,
            m.body,
            tuple(sorted(m.attributes.items())),
            m.delivery_count,
            m.enqueued_at_ms,
            m.due_ms,
            m.dead_lettered_from,
        )

    def _settle(self, op: Ack | Nack | Extend) -> Norm:
        q = self._touch(op.queue)
        if q is None:
            return _rejected("queue_not_found")
        if not 1 <= len(op.receipts) <= MAX_BATCH:
            return _rejected("invalid_argument", "receipts")
        if isinstance(op, Nack) and not 0 <= op.delay_ms <= MAX_DELAY_MS:
            return _rejected("invalid_argument", "delay_s")
        if isinstance(op, Extend) and not 0 < op.visibility_timeout_ms <= MAX_VISIBILITY_TIMEOUT_MS:
            return _rejected("invalid_argument", "visibility_timeout_s")
        return ("settled", tuple(self._settle_one(q, op, receipt) for receipt in op.receipts))

    def _settle_one(self, q: Queue, op: Ack | Nack | Extend, receipt: str) -> str:
        now = self.clock
        rid = self.receipts.get(receipt)
        if rid is None or rid[0] != q.incarnation:
            return "invalid"
        _, seq, delivery = rid
        m = q.messages.get(seq)
        acked = q.acked.get(seq)
        if m is None and acked is not None and acked[0] == delivery and now < acked[1]:
            return "already_acked"
        if m is None or m.state != LEASED or m.delivery_count != delivery or m.due_ms <= now:
            return "stale"
        if isinstance(op, Ack):
            del q.messages[seq]
            q.acked[seq] = (delivery, now + q.config.dedup_window_ms)
            q.acked_total += 1
            return "acked"
        if isinstance(op, Extend):
            m.due_ms = now + op.visibility_timeout_ms
            return "extended"
        if self._exhausted(q, m):
            self._dead_letter(op.queue, seq)
            return "dead_lettered"
        if op.delay_ms:
            m.state, m.due_ms = DELAYED, now + op.delay_ms
        else:
            m.state, m.due_ms = READY, 0
            self._woken.add(op.queue)
        return "nacked"

    # transactions
    def _txn_view(self, tid: str) -> Txn | None:
        """The record as of the clock, without changing anything."""
        txn = self.txns.get(tid)
        if txn is None or self.clock < txn.due_ms:
            return txn
        if txn.status != "pending":
            return None
        timed_out = copy.deepcopy(txn)
        timed_out.status, timed_out.reason, timed_out.decided_index = "aborted", "timeout", None
        timed_out.due_ms, timed_out.stages = txn.due_ms + txn.retention_ms, []
        return timed_out if self.clock < timed_out.due_ms else None

    def _txn(self, tid: str) -> Txn | None:
        txn = self._txn_view(tid)
        if txn is None:
            self.txns.pop(tid, None)
        else:
            self.txns[tid] = txn
        return txn

    @staticmethod
    def _txn_ops_error(ops: Sequence[TxnOp], ops_before: int = 0, items_before: int = 0) -> Norm | None:
        if not ops or ops_before + len(ops) > MAX_TXN_OPS or items_before + _items(ops) > MAX_TXN_ITEMS:
            return _rejected("invalid_argument", "ops")
        return None

    @staticmethod
    def _txn_id_error(tid: str) -> Norm | None:
        return None if 1 <= len(tid) <= MAX_TXN_ID_LEN else _rejected("invalid_argument", "transaction_id")

    @staticmethod
    def _retention_error(retention_ms: int) -> Norm | None:
        lo, hi = TXN_RETENTION_RANGE
        return None if lo <= retention_ms <= hi else _rejected("invalid_argument", "retention_s")

    def _txn_apply(self, ops: Sequence[TxnOp]) -> tuple[tuple[Norm, ...], tuple[tuple[int, str, str | None], ...]]:
        """All ops or none; every op is evaluated on the effects of the ones before it."""
        saved_all, woken_all = copy.deepcopy(self.queues), set(self._woken)
        results: list[Norm] = []
        failures: list[tuple[int, str, str | None]] = []
        for i, op in enumerate(ops):
            saved, woken = copy.deepcopy(self.queues), set(self._woken)
            result = self._enqueue(op) if isinstance(op, Enqueue) else self._settle(op)
            if result[0] == "rejected":
                self.queues, self._woken = saved, woken
                field = result[2]
                failures.append((i, str(result[1]), f"ops[{i}]" if field is None else f"ops[{i}].{field}"))
                continue
            if result[0] == "settled":
                outcomes = result[1]
                assert isinstance(outcomes, tuple)
                for j, outcome in enumerate(outcomes):
                    if outcome not in SETTLED_OK:
                        failures.append((i, outcome, f"ops[{i}].receipts[{j}]"))
            results.append(result)
        if failures:
            self.queues, self._woken = saved_all, woken_all
            return (), tuple(failures)
        return tuple(results), ()

    def _transact(self, op: Transact) -> Norm:
        bad = self._txn_id_error(op.transaction_id) or self._retention_error(op.retention_ms)
        bad = bad or self._txn_ops_error(op.ops)
        if bad is not None:
            return bad
        tid = op.transaction_id
        txn = self._txn(tid)
        if txn is not None:
            if not txn.one_shot or txn.fingerprint != op.fingerprint:
                return _rejected("transaction_conflict", "transaction_id")
            return txn.outcome(tid, True)
        results, failures = self._txn_apply(op.ops)
        if failures:
            return ("txn", tid, "aborted", self._index, (), failures, "preconditions", 0, 0, False)
        txn = Txn(True, "committed", op.retention_ms, self.clock + op.retention_ms, op.fingerprint)
        txn.decided_index, txn.results = self._index, results
        self.txns[tid] = txn
        return txn.outcome(tid, False)

    def _begin(self, op: BeginTxn) -> Norm:
        bad = self._txn_id_error(op.transaction_id) or self._retention_error(op.retention_ms)
        if bad is not None:
            return bad
        if not TXN_TIMEOUT_RANGE[0] <= op.timeout_ms <= TXN_TIMEOUT_RANGE[1]:
            return _rejected("invalid_argument", "timeout_s")
        txn = self._txn(op.transaction_id)
        if txn is not None:
            if txn.one_shot:
                return _rejected("transaction_exists", "transaction_id")
            return txn.outcome(op.transaction_id, True)
        txn = Txn(False, "pending", op.retention_ms, self.clock + op.timeout_ms)
        self.txns[op.transaction_id] = txn
        return txn.outcome(op.transaction_id, False)

    def _stage(self, op: StageTxn) -> Norm:
        bad = self._txn_id_error(op.transaction_id)
        if bad is not None:
            return bad
        if op.stage_seq < 1:
            return _rejected("invalid_argument", "stage_seq")
        if not op.ops:
            return _rejected("invalid_argument", "ops")
        tid = op.transaction_id
        txn = self._txn(tid)
        if txn is None:
            return _rejected("transaction_not_found", "transaction_id")
        if txn.status != "pending":
            return _rejected("transaction_not_pending", "transaction_id")
        if op.stage_seq <= len(txn.stages):
            if txn.stages[op.stage_seq - 1][0] != op.fingerprint:
                return _rejected("transaction_conflict", "stage_seq")
            return txn.outcome(tid, True)
        if op.stage_seq != len(txn.stages) + 1:
            return _rejected("invalid_argument", "stage_seq")
        bad = self._txn_ops_error(op.ops, txn.staged_ops, txn.staged_items)
        if bad is not None:
            return bad
        txn.stages.append((op.fingerprint, list(op.ops)))
        txn.staged_ops += len(op.ops)
        txn.staged_items += _items(op.ops)
        return txn.outcome(tid, False)

    def _commit(self, op: CommitTxn) -> Norm:
        tid = op.transaction_id
        bad = self._txn_id_error(tid)
        if bad is not None:
            return bad
        txn = self._txn(tid)
        if txn is None:
            return _rejected("transaction_not_found", "transaction_id")
        if txn.status == "aborted" and txn.reason == "aborted":
            return _rejected("transaction_not_pending", "transaction_id")
        if txn.status != "pending":
            return txn.outcome(tid, True)
        results, failures = self._txn_apply([o for _, ops in txn.stages for o in ops])
        txn.stages = []
        txn.status = "aborted" if failures else "committed"
        txn.reason = "preconditions" if failures else None
        txn.decided_index, txn.due_ms = self._index, self.clock + txn.retention_ms
        txn.results, txn.failures = results, failures
        return txn.outcome(tid, False)

    def _abort(self, op: AbortTxn) -> Norm:
        tid = op.transaction_id
        bad = self._txn_id_error(tid)
        if bad is not None:
            return bad
        txn = self._txn(tid)
        if txn is None:
            return _rejected("transaction_not_found", "transaction_id")
        if txn.status == "committed":
            return _rejected("transaction_not_pending", "transaction_id")
        if txn.status == "aborted":
            return txn.outcome(tid, True)
        txn.stages = []
        txn.status, txn.reason = "aborted", "aborted"
        txn.decided_index, txn.due_ms = self._index, self.clock + txn.retention_ms
        return txn.outcome(tid, False)

    # timers and dead-lettering
    def _sources(self, name: str) -> list[str]:
        return sorted((n for n, q in self.queues.items() if q.config.dead_letter_queue == name), key=_by_bytes)

    def _touch(self, name: str) -> Queue | None:
        for source in self._sources(name):
            self._settle_timers(source)
        self._settle_timers(name)
        return self.queues.get(name)

    @staticmethod
    def _exhausted(q: Queue, m: Message) -> bool:
        return q.config.max_deliveries > 0 and m.delivery_count >= q.config.max_deliveries

    def _settle_timers(self, name: str) -> None:
        q = self.queues.get(name)
        if q is None:
            return
        ended = sorted((m.due_ms, seq) for seq, m in q.messages.items() if m.state != READY and m.due_ms <= self.clock)
        for _, seq in ended:
            m = q.messages[seq]
            if m.state == LEASED and self._exhausted(q, m):
                self._dead_letter(name, seq)
            else:
                m.state, m.due_ms = READY, 0
                self._woken.add(name)

    def _dead_letter(self, name: str, seq: int) -> None:
        q = self.queues[name]
        m = q.messages.pop(seq)
        q.dead_lettered += 1
        assert q.config.dead_letter_queue is not None
        dlq_name = q.config.dead_letter_queue
        dlq = self.queues[dlq_name]
        dlq.messages[dlq.next_seq] = Message(
            m.message_id, m.body, m.attributes, m.enqueued_at_ms, READY, m.delivery_count, 0, name
        )
        dlq.next_seq += 1
        dlq.enqueued_total += 1
        self._woken.add(dlq_name)


# The real machine's outputs in the same normal form.


def normalise_delivery(d: Delivery) -> Norm:
    return (
        d.message_id,
        d.seq,
        d.body,
        tuple(sorted(d.attributes.items())),
        d.delivery_count,
        d.enqueued_at_ms,
        d.lease_expires_at_ms,
        d.dead_lettered_from,
    )


def normalise(result: Result) -> Norm:
    if isinstance(result, Rejected):
        return ("rejected", result.code.value, result.field)
    if isinstance(result, QueueCreated):
        return ("created", result.created)
    if isinstance(result, QueueDeleted):
        return ("deleted",)
    if isinstance(result, Enqueued):
        return ("enqueued", tuple((m.message_id, m.seq, m.duplicate) for m in result.messages))
    if isinstance(result, Received):
        return ("received", tuple(normalise_delivery(d) for d in result.messages), result.next_visible_at_ms)
    if isinstance(result, Settled):
        return ("settled", tuple(o.value for o in result.outcomes))
    if isinstance(result, TxnOutcome):
        return normalise_txn(result)
    assert isinstance(result, BarrierPassed), result
    return ("barrier",)


def normalise_txn(t: TxnOutcome) -> Norm:
    """A TxnOutcome in normal form (failure details are prose: left out)."""
    return (
        "txn",
        t.transaction_id,
        t.status.value,
        t.decided_index,
        tuple(normalise(r) for r in t.results),
        tuple((f.op, f.code, f.field) for f in t.failures),
        t.reason,
        t.expires_at_ms,
        t.staged_ops,
        t.duplicate,
    )


def receipts_of(result: Result) -> list[str]:
    return [d.receipt for d in result.messages] if isinstance(result, Received) else []


def normalise_info(info: QueueInfo) -> Norm:
    c = info.counts
    counts = (c.ready, c.leased, c.delayed, c.dead_lettered, c.enqueued_total, c.acked_total)
    return (info.name, info.config, counts, info.created_at_ms)


def check_applied(real: AppliedEntry | None, expected: ModelApplied | None, model: ReferenceModel) -> None:
    """Asserts that the real machine did what the model did, and teaches the model the new receipts."""
    if expected is None:
        assert real is None, real
        return
    assert real is not None, expected
    assert real.index == expected.index
    got = tuple(normalise(r) for r in real.results)
    assert got == expected.results, f"\nreal:  {got}\nmodel: {expected.results}"
    # Waking a queue that no longer exists means nothing (its long polls end with queue_not_found either way).
    existing = set(model.queues)
    assert real.woken & existing == expected.woken & existing, (real.woken, expected.woken)
    for result, ids in zip(real.results, expected.receipts, strict=True):
        model.learn_receipts(receipts_of(result), ids)


# A random workload for the tests that compare stores (RocksKV vs MemoryKV, snapshots, determinism).

EXAMPLE_CONFIGS: tuple[QueueConfig, ...] = (
    QueueConfig(visibility_timeout_ms=100, dedup_window_ms=300),
    QueueConfig(visibility_timeout_ms=60, max_length=3, dedup_window_ms=200, max_message_bytes=4),
    QueueConfig(visibility_timeout_ms=80, max_deliveries=1, dead_letter_queue="dl"),
    QueueConfig(visibility_timeout_ms=50, max_deliveries=2, dead_letter_queue="dl", max_length=4),
    QueueConfig(visibility_timeout_ms=120, max_deliveries=3, dead_letter_queue="q1", dedup_window_ms=150),
)
EXAMPLE_NAMES = ("dl", "q1", "q2", "q3")


def new_message(message_id: str, body: bytes, attributes: dict[str, str], delay_ms: int, key: str | None) -> NewMessage:
    return NewMessage(message_id, body, attributes, delay_ms, key, fingerprint(body, attributes, delay_ms))


class RandomWorkload:
    """Random entries over a few queues; settles with the receipts it has seen, mostly on the right queue."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.now = 1_000_000
        #: (receipt, queue) of every delivery seen, newest last.
        self.receipts: list[tuple[str, str]] = []
        self._ids = 0
        self._last: Entry | None = None

    def next_entry(self) -> Entry:
        rng = self.rng
        self.now += rng.choice((0, 0, 5, 10, 20, 40, 200))
        stamp = self.now - rng.choice((0, 0, 0, 0, 150))  # sometimes a stamp from the past
        self._last = Entry(stamp, [self._op() for _ in range(rng.choice((1, 1, 1, 2, 3)))])
        return self._last

    def observe(self, applied: AppliedEntry | None) -> None:
        if applied is None or self._last is None:
            return
        for op, result in zip(self._last.ops, applied.results, strict=True):
            if isinstance(op, Receive):
                self.receipts.extend((r, op.queue) for r in receipts_of(result))

    def _op(self) -> Command:
        rng = self.rng
        name = rng.choice(EXAMPLE_NAMES)
        kind = rng.choices(
            ("create", "delete", "enqueue", "receive", "settle", "barrier", "txn"), (2, 0.3, 6, 5, 6, 1, 2)
        )[0]
        if kind == "create":
            return CreateQueue(name, rng.choice(EXAMPLE_CONFIGS))
        if kind == "delete":
            return DeleteQueue(name)
        if kind == "enqueue":
            return self._enqueue(name)
        if kind == "receive":
            attempt = rng.choice((None, None, "a1", "a2"))
            return Receive(name, rng.choice((1, 2, 3)), rng.choice((None, None, 30, 90)), attempt)
        if kind == "barrier":
            return Barrier()
        if kind == "txn":
            return self._txn()
        return self._settle(name)

    def _enqueue(self, name: str) -> Enqueue:
        rng = self.rng
        messages = []
        for _ in range(rng.choice((1, 1, 2, 3))):
            self._ids += 1
            messages.append(
                new_message(
                    f"m{self._ids}",
                    rng.choice((b"a", b"b", b"", b"toolong")),
                    rng.choice(({}, {"k": "v"})),
                    rng.choice((0, 0, 0, 40, 150)),
                    rng.choice((None, None, "k1", "k2", "k3")),
                )
            )
        return Enqueue(name, messages)

    def _settle(self, name: str) -> Ack | Nack | Extend:
        rng = self.rng
        picks = [rng.choice(self.receipts[-8:]) if self.receipts else ("x", name) for _ in range(rng.choice((1, 2)))]
        if rng.random() < 0.8:
            name = picks[0][1]
        receipts = [r for r, _ in picks]
        which = rng.choice(("ack", "nack", "extend"))
        if which == "ack":
            return Ack(name, receipts)
        if which == "nack":
            return Nack(name, receipts, rng.choice((0, 0, 30)))
        return Extend(name, receipts, rng.choice((10, 50, 200)))

    def _txn(self) -> Command:
        rng = self.rng
        tid = rng.choice(("t1", "t2"))
        ops: list[TxnOp] = [
            self._enqueue(rng.choice(EXAMPLE_NAMES)) if rng.random() < 0.5 else self._settle(rng.choice(EXAMPLE_NAMES))
            for _ in range(rng.choice((1, 2)))
        ]
        which = rng.choice(("transact", "begin", "begin", "stage", "stage", "stage", "commit", "abort"))
        if which == "transact":
            return Transact(tid, txn_fingerprint(ops), ops, rng.choice((1000, 3000)))
        if which == "begin":
            return BeginTxn(tid, rng.choice((2000, 5000)), rng.choice((1000, 3000)))
        if which == "stage":
            return StageTxn(tid, rng.choice((1, 1, 2)), txn_fingerprint(ops), ops)
        if which == "commit":
            return CommitTxn(tid)
        return AbortTxn(tid)
