"""Linearizability of a FIFO queue: a Wing & Gong search with Lowe's memoization (as in Porcupine and Knossos).

**The model.** One queue, a sequence of values (message bodies), initially empty. Two operations:

- ``enqueue(v) -> ok``: appends ``v``.
- ``dequeue(m) -> [v1..vk]``: removes the first ``k`` values, which must be ``v1..vk`` in order, where
  ``k = min(m, length)``: it takes ``m`` values, or all of them if fewer are ready. ``k = 0`` is "empty".

**What in a history is an operation of the model.** For the chosen queue:

- an ``enqueue`` is ``enqueue(body)``;
- a ``receive`` with ``max_messages = m`` is ``dequeue(m)`` returning the bodies of the messages it leased, in the
  order given. The receive is the point where the messages leave the ready set; the ack that follows (normally by
  the same client at once) settles the delivery and changes nothing another consumer can observe. So the logical
  "receive then ack" dequeue takes effect at the receive. The workload uses a visibility timeout longer than the
  test and no delays, so a lease normally ends with its ack; see *Leases that run out* for when it does not.
- with ``include_drain``, an ok ``drain`` is ``dequeue(everything)`` returning what it read (after every other op),
  compared as a multiset: the drain is many receives, and a message whose lease runs out while it reads comes last.
- acks are not operations, but their answers say which leases may have run out (below). ``create-queue`` and other
  reads are ignored. ``nack``, ``extend`` and an enqueue with ``delay_s`` mean a message came back or was hidden in
  ways the model does not follow: the history is outside the model, and the answer is ``"unknown"`` with the reason.

**Leases that run out** (raft-queue's semantics: a message whose lease expires is ready again *at its old
position*, the ready set being ordered by enqueue sequence, and its next delivery has a higher ``delivery_count``).
A message whose delivery has ``delivery_count > 1`` (a *redelivery*) must be enqueued by one logical enqueue. In
the model a dequeue that takes such a message may *lease* it instead of removing it; a leased message is invisible
until it comes back, at the head of the queue (every ready message was behind it: see :func:`_search`), and is
taken again by its next delivery. A take of a message leases it (rather than removing it) exactly when a later
delivery of it is still to come, and that take may run out only if it is

- a receive with an unknown outcome (its client never learnt the receipt, so nobody acked it), or
- an ok receive whose receipt no ack certainly settled: no ack of it answered ``acked``. An ack with an unknown
  outcome may or may not have taken effect (at most once): if the message is delivered again, it did not.

A delivery with ``delivery_count = 1`` is the message's first lease: nothing took it before (so an unknown receive
cannot have leased it earlier); one with ``delivery_count > 1`` in a receive had an earlier lease; in the drain it
may also follow the drain's own expired lease, so it may or may not. (Counts are not checked beyond that.) An ack
answered ``stale`` (the receipt is no longer valid) is explained when another ack of the same receipt that may have
taken effect (unknown outcome, or ``acked``) was invoked before the answer came: the client retried an ack whose
first attempt had an unknown outcome, and that attempt did ack it. Otherwise the lease ran out with the message not
deleted: it must be delivered again (with a higher count); if it never is, the answer is ``False`` (kind
``"lost"``) when an ok drain is included, and ``"unknown"`` (outside the model) without one.

**Idempotent retries.** Enqueue requests with the same idempotency key and body are one logical enqueue (the
server appends the message once and answers the retries ``duplicate``): it takes effect between the earliest invoke
of a request that did not fail and the first ok answer, or is unknown if none was ok. Bodies should be unique per
logical message (as for :mod:`chaos.check_queue`); repeated bodies are allowed but check slower and get no pruning.

**Patterns first.** Four shapes of violation are looked for directly, in O(n log n) (:func:`_find_pattern`):
*fresh* (a value dequeued that was never enqueued, or only after), *repeat* (dequeued twice, where no lease that
ran out explains it), *fifo-order* (``a`` enqueued before ``b`` was invoked, yet ``b`` dequeued before ``a`` could
have left) and *not-empty* (a dequeue that got fewer than it asked for while a value was certainly queued). Each
alone proves the history is not linearizable, and the counterexample is just the 2-4 operations involved. (A
*lost* message, above, is found from the acks before any of this.)

**The search** (Lowe's refinement of Wing & Gong, as in Porcupine): walk a doubly linked list of call and return
entries; linearize a call whose model step succeeds and whose (set of linearized ops, model state) has not been
seen, lift it out of the list and start again from the head; at a return entry of an op not yet linearized,
backtrack. It succeeds when every ``ok`` op is linearized (unknown ops may stay pending). Each loop iteration is a
step; past ``max_steps`` the answer is ``"unknown"``. Exact prunings keep it fast on real histories (each is
argued where it is coded, and the tests compare the checker with exhaustive searches, with and without leases, on
thousands of small random histories): values no ok dequeue returned are indistinguishable in the state, and so are
values only the drain returned; the part of the queue behind a first delivery only the drain returned is unordered;
a first delivery returned by an ok dequeue cannot have been taken by an unknown one before; the enqueue order of
values is fixed by the order of their first deliveries where that is known; interchangeable unknown ops go in
invoke order; unknown enqueues of values returned later are ok ops ending at that return (and starting at the
drain, if only the drain returned them); unknown enqueues of values never returned are dropped when unknown
dequeues take one message each; then a value at the head that only an unknown dequeue can take is taken by the next
one at once. The search tries ok ops first, then unknown ones, then enqueues of values only unknown dequeues (or
the drain) can take.

**Performance** (measured on simulated histories): with ``max_messages = 1`` and up to 8 concurrent clients,
including 10-30 % unknown outcomes, 200 ops take a few thousand steps (milliseconds). With leases that run out as
in the workload (3 writers, 2 consumers, acks retried, long leases, the drain at the end), 1000 ops with 30 %
unknown outcomes and about 100 redelivered messages take under 100 000 steps (a fraction of a second). Unknown
receives of several messages at once, many more concurrent clients, or leases that run out again and again during
the test (messages delivered many times) can cost far more and may end "unknown".

**Counterexample** (from the search, when no pattern applied). A binary search over the completion events finds
the shortest prefix of the history that is already not linearizable (ops completing later count as pending in a
prefix; the property is monotone in the prefix). The report names the op whose completion broke it, the ops of that
prefix, and the deepest partial linearization an unpruned search found for it, with the queue it leaves.
"""

from __future__ import annotations

import bisect
import itertools
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Literal

from chaos.history import (
    Event,
    HistoryError,
    Operation,
    Process,
    as_operations,
    deliveries,
    enqueue_value,
    receive_max_messages,
    settle_outcomes,
    settle_receipts,
)

DEFAULT_MAX_STEPS = 1_000_000
Validity = bool | Literal["unknown"]


@dataclass(frozen=True)
class QueueOp:
    """An operation of the FIFO model."""

    id: int
    process: Process
    kind: Literal["enqueue", "dequeue"]
    #: enqueue: (body,); known dequeue: the bodies returned, in order; unknown dequeue: ()
    values: tuple[str, ...]
    #: dequeue: how many it takes at most; 0 = all (a drain)
    max_messages: int = 1
    #: False: the outcome is unknown (pending until the end, may or may not take effect)
    known: bool = True
    call: int = 0
    ret: int | None = None
    #: how many enqueue requests (retries with one idempotency key) this logical enqueue stands for
    attempts: int = 1
    #: overrides describe()
    label: str | None = None
    #: known dequeue: the delivery_count of each value returned, in order (empty: each is a first delivery)
    counts: tuple[int, ...] = ()
    #: known dequeue: for each value returned, whether its lease certainly ended with the message deleted (an ack
    #: answered ``acked``); empty: True for a drain (max_messages 0), else False. Only a lease that did not may run
    #: out, after which the message is delivered again.
    settled: tuple[bool, ...] = ()

    def count(self, pos: int) -> int:
        """The delivery_count of the value at ``pos`` of a known dequeue's result."""
        return self.counts[pos] if pos < len(self.counts) else 1

    def lease_settled(self, pos: int) -> bool:
        return self.settled[pos] if pos < len(self.settled) else self.max_messages == 0

    def describe(self) -> str:
        if self.label is not None:
            return self.label
        span = f"[{self.call}..{self.ret if self.known else '?'}]"
        if self.kind == "enqueue":
            result = "ok" if self.known else "?"
            tries = f" ({self.attempts} attempts)" if self.attempts > 1 else ""
            return f"process {self.process} enqueue({self.values[0]!r}){tries} -> {result} {span}"
        m = "all" if self.max_messages == 0 else str(self.max_messages)
        result = "?"
        if self.known:
            items = (
                f"{v!r}" + (f" (delivery {self.count(i)})" if self.count(i) > 1 else "")
                for i, v in enumerate(self.values)
            )
            result = "[" + ", ".join(items) + "]"
        return f"process {self.process} dequeue({m}) -> {result} {span}"


def _redelivered(ops: Sequence[QueueOp]) -> set[str]:
    """Values enqueued by exactly one op with a delivery whose delivery_count is above 1: those may be leased (taken
    and brought back later) rather than removed. Other values are taken once and for all."""
    enqueued = Counter(op.values[0] for op in ops if op.kind == "enqueue")
    return {
        v
        for op in ops
        if op.kind == "dequeue" and op.known
        for pos, v in enumerate(op.values)
        if op.count(pos) > 1 and enqueued[v] == 1
    }


@dataclass(frozen=True)
class Counterexample:
    #: "fresh", "repeat", "fifo-order", "not-empty" (a pattern, see :func:`_find_pattern`), "search", or "lost" (a
    #: stale ack no earlier attempt explains, and the message never delivered again: see the module's docstring)
    kind: str
    #: the op that cannot be explained, and its completion event
    failing_op: str
    failing_index: int
    #: pattern: just the operations that together make the violation; search: every op of the failing prefix
    operations: list[str]
    message: str
    #: search: True when the binary search finished (the prefix is the shortest failing one)
    shortest_prefix: bool = False
    #: search: the deepest partial linearization found for that prefix, and the queue it leaves
    longest_partial: list[str] = field(default_factory=list)
    queue_after_partial: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class LinearResult:
    valid: Validity
    queue: str | None
    op_count: int
    unknown_op_count: int
    steps: int
    reason: str
    #: a witness order of the ok (and taken-effect unknown) ops when valid, and their invoke indices
    linearization: list[str] = field(default_factory=list)
    witness_calls: list[int] = field(default_factory=list)
    counterexample: Counterexample | None = None


@dataclass(frozen=True)
class LinearizabilityResult:
    valid: Validity
    queues: dict[str, LinearResult]


def merge_validity(values: Sequence[Validity]) -> Validity:
    """Jepsen's merge: any False -> False, else any unknown -> unknown, else True."""
    if any(v is False for v in values):
        return False
    if any(v == "unknown" for v in values):
        return "unknown"
    return True


# ---------------------------------------------------------------------------------------------------------------
# From a history to model operations


@dataclass(frozen=True)
class _Lost:
    """A lease that certainly ran out with its message not deleted (an ack answered ``stale`` and no other ack of
    the receipt may have acked it), yet the message was never delivered again."""

    receive: QueueOp
    ack: Operation
    body: str


@dataclass(frozen=True)
class _Extracted:
    ops: list[QueueOp]
    outside: list[str]
    lost: list[_Lost]
    drain: QueueOp | None


def queue_ops(
    history: Sequence[Event] | Sequence[Operation], queue: str, *, include_drain: bool = False
) -> tuple[list[QueueOp], list[str]]:
    """The queue's operations as model ops (in invoke order), and the reasons the history is outside the model.

    Enqueue requests with the same idempotency key (and body) are one logical enqueue: the message was appended by
    exactly one of them (the others answered ``duplicate``), so it took effect after the earliest invoke of a
    request that did not fail, and no later than the first ok answer; with no ok answer its outcome is unknown.

    Each known dequeue carries the delivery counts of what it returned, and whether an ack certainly settled each
    lease (see the module's *Leases that run out*). Messages certainly lost are reported by
    :func:`check_queue_linearizable`, not here.
    """
    got = _extract(history, queue, include_drain=include_drain)
    return got.ops, got.outside


def _extract(history: Sequence[Event] | Sequence[Operation], queue: str, *, include_drain: bool) -> _Extracted:
    out: list[QueueOp] = []
    keyed: dict[tuple[str, str], list[Operation]] = {}
    outside: list[str] = []
    #: receipt -> (index in out of the ok receive that returned it, position in its result)
    receipts: dict[str, tuple[int, int]] = {}
    #: receipt -> every ack that may have reached the server: (ack, its answer for the receipt, None if unknown)
    attempts: dict[str, list[tuple[Operation, str | None]]] = {}
    drain_at: int | None = None
    for op in as_operations(history):
        if op.queue != queue or op.type == "fail":
            continue
        known = op.type == "ok"
        ret = op.end
        if op.f == "enqueue":
            inv = op.invoke.value
            if isinstance(inv, dict) and inv.get("delay_s") not in (None, 0, 0.0):
                outside.append(f"{op.describe()} has a delay")
            v = enqueue_value(op)
            if v.key is not None:
                keyed.setdefault((v.key, v.body), []).append(op)
            else:
                out.append(QueueOp(0, op.process, "enqueue", (v.body,), 1, known, op.start, ret))
        elif op.f == "receive" or (op.f == "drain" and include_drain and known):
            got = deliveries(op)
            values = tuple(d.body for d in got)
            counts = tuple(max(1, d.delivery_count or 1) for d in got)
            if op.f == "drain":
                drain_at = len(out)
                m = 0
            else:
                m = receive_max_messages(op)
                for pos, d in enumerate(got):
                    if d.receipt is not None:
                        receipts[d.receipt] = (len(out), pos)
            counted = counts if any(c > 1 for c in counts) else ()
            out.append(QueueOp(0, op.process, "dequeue", values, m, known, op.start, ret, counts=counted))
        elif op.f in ("nack", "extend"):
            outside.append(f"{op.describe()} is outside the model")
        elif op.f == "ack":
            if op.ok:
                for r, outcome in settle_outcomes(op):
                    attempts.setdefault(r, []).append((op, outcome))
            else:
                for r in settle_receipts(op):
                    attempts.setdefault(r, []).append((op, None))

    settled, lost, unexplained = _read_acks(out, receipts, attempts, has_drain=drain_at is not None)
    outside.extend(unexplained)
    for i, qop in enumerate(out):
        if qop.kind == "dequeue" and qop.known and qop.max_messages != 0:
            flags = tuple((i, pos) in settled for pos in range(len(qop.values)))
            if any(flags):
                out[i] = replace(qop, settled=flags)
    drain = out[drain_at] if drain_at is not None else None

    for (_, body), tries in keyed.items():
        oks = [a for a in tries if a.ok and a.end is not None]
        first_ok = min(oks, key=lambda a: a.end or 0) if oks else None
        process = first_ok.process if first_ok else tries[0].process
        call = min(a.start for a in tries)
        ret = first_ok.end if first_ok else None
        out.append(QueueOp(0, process, "enqueue", (body,), 1, first_ok is not None, call, ret, len(tries)))
    enqueued = Counter(q.values[0] for q in out if q.kind == "enqueue")
    again = sorted(
        {v for q in out if q.kind == "dequeue" and q.known for p, v in enumerate(q.values) if q.count(p) > 1}
    )
    outside.extend(
        f"{v!r} was delivered again (delivery_count > 1) but enqueued by {enqueued[v]} logical enqueues: "
        "redeliveries are followed only for bodies enqueued once"
        for v in again
        if enqueued[v] > 1
    )
    out.sort(key=lambda o: o.call)
    return _Extracted([replace(op, id=i) for i, op in enumerate(out)], outside, lost, drain)


def _read_acks(
    out: Sequence[QueueOp],
    receipts: dict[str, tuple[int, int]],
    attempts: dict[str, list[tuple[Operation, str | None]]],
    *,
    has_drain: bool,
) -> tuple[set[tuple[int, int]], list[_Lost], list[str]]:
    """What the acks say: the deliveries (index in ``out``, position) whose lease an ack certainly ended (answered
    ``acked``); the messages certainly lost; and the reasons the history is outside the model.

    A ``stale`` answer is explained when another ack of the same receipt that may have taken effect (unknown
    outcome, or answered ``acked``) was invoked before the answer: typically the client retried an ack whose first
    attempt had an unknown outcome, and that one acked it. Otherwise the lease ran out with the message not
    deleted, so it must be delivered again (a later delivery with a higher delivery_count); if it never is, it was
    lost (when an ok drain read the queue at the end) or its fate is unknown (no drain).
    """
    settled: set[tuple[int, int]] = set()
    lost: list[_Lost] = []
    outside: list[str] = []
    for r, tries in attempts.items():
        where = receipts.get(r)
        # "already_acked": an earlier ack of this receipt took effect (the server remembers acked receipts)
        if where is not None and any(outcome in ("acked", "already_acked") for _, outcome in tries):
            settled.add(where)
        for ack, outcome in tries:
            if outcome != "stale":
                continue
            answered = ack.end if ack.end is not None else ack.start
            if any(other is not ack and o in (None, "acked") and other.start < answered for other, o in tries):
                continue  # an earlier attempt with an unknown outcome (or an ok one) may have acked it
            if where is None:
                outside.append(f"{ack.describe()}: receipt {r} answered stale, and no ok receive returned it")
                continue
            d = out[where[0]]
            body, count = d.values[where[1]], d.count(where[1])
            if any(
                x.kind == "dequeue" and x.known and x.values[p] == body and x.count(p) > count
                for x in out
                for p in range(len(x.values))
            ):
                continue  # the lease ran out and the message was delivered again: a redelivery
            if has_drain:
                lost.append(_Lost(d, ack, body))
            else:
                outside.append(
                    f"{ack.describe()}: receipt {r} answered stale with no earlier ack that may have acked it (its "
                    f"lease ran out), and {body!r} was not delivered again"
                )
    return settled, lost, outside


def _normalize(ops: Sequence[QueueOp]) -> list[QueueOp]:
    """Exact simplifications of unknown enqueues, which otherwise make the search explode.

    - An unknown enqueue of a value enqueued by no other op, which an ok dequeue returned, did take effect, before
      that dequeue: it becomes a known op whose interval ends at that dequeue's completion.
    - If only a drain returned that value and every unknown dequeue takes one message, it may as well take effect
      just before the drain: given a linearization, moving it there (and dropping the unknown dequeue that took it,
      if any) leaves one, as below. So its interval starts at the drain's invoke, if that is later.
    - An unknown enqueue of a value no ok dequeue returned is dropped when every unknown dequeue takes one message:
      given a linearization in which it takes effect, removing it (and the unknown dequeue that took it, if any)
      leaves a linearization: it never was within an ok dequeue's result, so each ok dequeue it was queued behind
      took all it asked for, with or without it.
    """
    enqueued = Counter(op.values[0] for op in ops if op.kind == "enqueue")
    seen_by: dict[str, int] = {}
    returned_by: dict[str, list[QueueOp]] = {}
    for op in ops:
        if op.kind == "dequeue" and op.known and op.ret is not None:
            for v in op.values:
                seen_by[v] = min(seen_by.get(v, op.ret), op.ret)
                returned_by.setdefault(v, []).append(op)
    single_takes = all(op.max_messages == 1 for op in ops if op.kind == "dequeue" and not op.known)
    out: list[QueueOp] = []
    for op in ops:
        if op.kind == "enqueue" and not op.known:
            v = op.values[0]
            if v in seen_by and enqueued[v] == 1:
                by = returned_by[v]
                call = op.call
                label = f"{op.describe()}, returned by a dequeue that completed at {seen_by[v]}"
                if single_takes and len(by) == 1 and by[0].max_messages == 0 and by[0].call > call:
                    call = by[0].call
                    label = f"{op.describe()}, returned only by the drain: taken at [{call}..{seen_by[v]}]"
                out.append(replace(op, id=len(out), known=True, call=call, ret=seen_by[v], label=label))
                continue
            if v not in seen_by and single_takes:
                continue
        out.append(replace(op, id=len(out)))
    return out


# ---------------------------------------------------------------------------------------------------------------
# The search


@dataclass(frozen=True)
class _Outcome:
    status: Literal["ok", "fail", "unknown"]
    steps: int
    #: ok: the witness order; otherwise the deepest partial linearization
    order: list[int]
    #: the queue after ``order`` (values no ok dequeue returned shown as ``*``)
    state: list[str]


def _gates(ops: Sequence[QueueOp]) -> list[int]:
    """For each op, the ops that must take effect before it in every linearization (bitmask), from two facts.

    - Unknown dequeues with the same max_messages are interchangeable (same effect, no deadline): any
      linearization can be rearranged so that those that take something take effect in invoke order. So are
      unknown enqueues of values no ok dequeue returned (they all look alike, see :func:`_search`).
    - FIFO: for values ``a`` and ``b`` each enqueued by one op, whose first lease (delivery_count 1) one ok dequeue
      returned, if ``a`` left the queue first (that dequeue completed before ``b``'s was invoked, or one receive
      returned ``a`` before ``b``), then ``a`` was enqueued first. (Both were in the ready queue, in enqueue order,
      until then.) Without this the search guesses an order for concurrent enqueues and may only find out many
      operations later, after trying every combination of the guesses in between. Values with no first delivery
      in the history are left out: an unknown receive may have leased one long before any dequeue returned it. So
      is the order within a drain's result, which is not FIFO order.
    """
    gate = [0] * len(ops)
    returned = {v for op in ops if op.kind == "dequeue" and op.known for v in op.values}
    last_of: dict[int, int] = {}
    for i, op in enumerate(ops):
        if op.known:
            continue
        # unknown dequeues by max_messages; unknown enqueues of never-returned values (class -1) are alike too
        cls = op.max_messages if op.kind == "dequeue" else -1 if op.values[0] not in returned else None
        if cls is None:
            continue
        if cls in last_of:
            gate[i] |= 1 << last_of[cls]
        last_of[cls] = i
    enq_of: dict[str, list[int]] = {}
    deq_of: dict[str, list[tuple[int, int]]] = {}  # value -> [(dequeue op, position in its result)]
    first_of: dict[str, list[tuple[int, int]]] = {}  # the same, for first deliveries
    for i, op in enumerate(ops):
        if op.kind == "enqueue":
            enq_of.setdefault(op.values[0], []).append(i)
        elif op.known:
            for pos, v in enumerate(op.values):
                deq_of.setdefault(v, []).append((i, pos))
                if op.count(pos) <= 1:
                    first_of.setdefault(v, []).append((i, pos))
    unique = [(enq_of[v][0], first_of[v][0]) for v in enq_of if len(enq_of[v]) == 1 and len(first_of.get(v, ())) == 1]
    if not any(op.kind == "dequeue" and not op.known for op in ops):
        # nothing can remove a value no ok dequeue returned: it stays behind every value that is dequeued
        observed = 0
        for ea, _ in unique:
            observed |= 1 << ea
        for i, op in enumerate(ops):
            if op.kind == "enqueue" and op.values[0] not in deq_of:
                gate[i] |= observed
    # a left first -> a was enqueued first: one dequeue returned a before b ...
    in_one: dict[int, list[tuple[int, int]]] = {}
    for ea, (da, pa) in unique:
        if ops[da].max_messages != 0:
            in_one.setdefault(da, []).append((pa, ea))
    for items in in_one.values():
        earlier = 0
        for _, ea in sorted(items):
            gate[ea] |= earlier
            earlier |= 1 << ea
    # ... or a's dequeue completed before b's was invoked (prefix ORs over the dequeues sorted by completion)
    by_ret = sorted((ops[da].ret or 0, ea) for ea, (da, _) in unique)
    rets = [r for r, _ in by_ret]
    prefix_or = [0]
    for _, ea in by_ret:
        prefix_or.append(prefix_or[-1] | 1 << ea)
    for eb, (db, _) in unique:
        gate[eb] |= prefix_or[bisect.bisect_left(rets, ops[db].call)] & ~(1 << eb)
    return gate


UNOBSERVED = "*"
#: in a state: a value only the drain read
DRAINED = "+"
#: in a state: a value only the drain read, not for the first time
DRAINED_AGAIN = "++"
State = tuple[int, ...]


def _search(ops: Sequence[QueueOp], max_steps: int, *, prune: bool = True) -> _Outcome:
    """The search. ``prune=False`` turns off the gates, the merging of unobserved values and the pinning, for a
    plain partial linearization to show in a counterexample.

    The model state is the ready queue and, when some values are delivered again (:func:`_redelivered`), the
    tuple of those that are leased (taken, to come back), both in enqueue order. Two facts keep that exact and
    small:

    - The ready queue is in enqueue order, and a message that comes back goes to the head: every ready message was
      behind it. (A message ``b`` ready when ``a`` comes back was ready, untaken, when ``a`` was taken, so behind
      it; or it was enqueued after; or it came back itself, and those keep their enqueue order.) So a message taken
      for the first time was enqueued after every leased one, and is appended to the leased tuple.
    - A leased message comes back just before the ok dequeue that delivers it again, never earlier: had it come back
      earlier, an ok dequeue in between could not have skipped it, and an unknown dequeue that took it again could
      as well not have taken effect (or, taking ``m > 1``, taken fewer ready values: so an unknown dequeue of
      ``m`` may take any number of ready values from ``m - (leased count)`` to ``m``).
    """
    n = len(ops)
    inf = float("inf")
    keyed = sorted(
        [(float(op.call), 0, i) for i, op in enumerate(ops)]
        + [(float(op.ret) if op.known and op.ret is not None else inf, 1, i) for i, op in enumerate(ops)]
    )
    head, tail = 2 * n, 2 * n + 1
    nxt = [0] * (2 * n + 2)
    prv = [0] * (2 * n + 2)
    entry_op = [0] * (2 * n)
    is_call = [False] * (2 * n)
    call_pos = [0] * n
    ret_pos = [0] * n
    for pos, (_, kind, i) in enumerate(keyed):
        entry_op[pos] = i
        is_call[pos] = kind == 0
        if kind == 0:
            call_pos[i] = pos
        else:
            ret_pos[i] = pos
    chain = [head, *range(2 * n), tail]
    for a, b in itertools.pairwise(chain):
        nxt[a] = b
        prv[b] = a
    match = [0] * (2 * n)
    for i in range(n):
        match[call_pos[i]] = ret_pos[i]

    gate = _gates(ops) if prune else [0] * n
    kinds = [op.kind == "enqueue" for op in ops]
    # Values no ok dequeue returned are all coded 0: nothing can tell them apart (an unknown dequeue takes whatever
    # is at the head), and merging them keeps states that differ only in their order from being searched twice.
    # Likewise the values enqueued once that only the drain read: the first deliveries among them stay in the queue
    # until the drain (nothing else can take them, see ``pinned``); the others too, or an unknown dequeue leased
    # them. The drain takes them all whatever their order, from the queue or back from a lease. (Two codes.)
    enqueues = Counter(op.values[0] for op in ops if op.kind == "enqueue")
    returns = Counter(value for op in ops if op.kind == "dequeue" and op.known for value in op.values)
    codes: dict[str, int] = {}
    names = [UNOBSERVED]
    merged: list[bool] = [False]
    for op in ops:
        if (op.kind == "dequeue" and op.known) or not prune:
            drained = [0, 0]
            for pos, value in enumerate(op.values):
                if value in codes:
                    continue
                if prune and op.max_messages == 0 and enqueues[value] == returns[value] == 1:
                    first = op.count(pos) <= 1
                    if not drained[first]:
                        drained[first] = len(names)
                        names.append(DRAINED if first else DRAINED_AGAIN)
                        merged.append(True)
                    codes[value] = drained[first]
                else:
                    codes[value] = len(names)
                    names.append(value)
                    merged.append(False)
    vals = [tuple(codes.get(value, 0) for value in op.values) for op in ops]
    drain_vals = [tuple(sorted(v)) for v in vals]
    maxm = [op.max_messages for op in ops]
    known = [op.known for op in ops]
    bits = [1 << i for i in range(n)]
    # Values delivered again may be leased: taken, and back at the head before their next delivery.
    again = [False] * len(names)
    for value in _redelivered(ops):
        again[codes[value]] = True
    #: for a value delivered again: the ok dequeues that deliver it
    delivered_by = [0] * len(names)
    first_delivery = [False] * len(names)
    for i, op in enumerate(ops):
        if kinds[i] or not known[i]:
            continue
        for pos, c in enumerate(vals[i]):
            delivered_by[c] |= bits[i]
            first_delivery[c] = first_delivery[c] or op.count(pos) <= 1
    #: known dequeues that deliver a value that may be leased: the slow path
    leasing = [not kinds[i] and known[i] and any(again[c] for c in vals[i]) for i in range(n)]
    #: per position: 0 the value was never taken before (delivery_count 1), 1 it was (a receive's redelivery),
    #: 2 either (the drain's: its own expired lease may explain the count)
    source = [
        tuple(
            0 if op.count(p) <= 1 or not again[c] else 2 if op.max_messages == 0 else 1 for p, c in enumerate(vals[i])
        )
        for i, op in enumerate(ops)
    ]
    settled = [tuple(op.lease_settled(p) for p in range(len(op.values))) for op in ops]
    # Unknown dequeues of several values can take fewer ready values when leased ones come back first: try each.
    several = [not kinds[i] and not known[i] and maxm[i] != 1 and any(again) for i in range(n)]
    # A value enqueued once whose first lease an ok dequeue returned (delivery_count 1) was in the ready queue
    # until that dequeue: an unknown dequeue that would take it cannot be part of a linearization.
    pinned = [False] * len(names)
    for value, c in codes.items():
        pinned[c] = prune and enqueues[value] == 1 and first_delivery[c]

    # A value only the drain read, for the first time, stays in the queue until the drain, and so does everything
    # behind it: only the drain takes those, whatever their order. So what is behind it is kept sorted.
    frozen = [merged[c] and names[c] == DRAINED for c in range(len(names))]
    any_frozen = any(frozen)

    def canonical(leased: State) -> State:
        """Merged codes go last in the leased tuple (their order there does not matter: only a drain takes them)."""
        if not any(merged[c] for c in leased):
            return leased
        return tuple(c for c in leased if not merged[c]) + tuple(c for c in leased if merged[c])

    def take_known(i: int, ready: State, leased: State, linearized: int) -> tuple[State, State] | None:
        """A known dequeue that delivers a value that may be leased (else it is done inline)."""
        v, m, k = vals[i], maxm[i], len(vals[i])
        done = linearized | bits[i]
        if m == 0:
            # everything ready, and values leased before whose lease ran out (several may share a merged code)
            pool = list(ready)
            spare = list(leased)
            for c, src in zip(v, source[i], strict=True):
                if c in pool:
                    pool.remove(c)
                elif src == 2 and c in spare:
                    spare.remove(c)
                else:
                    return None
            if pool or any(again[c] and delivered_by[c] & ~done for c in v):
                return None  # (the drain ends its leases: nothing it took is delivered again)
            return (), tuple(spare)
        back = [c for c, src in zip(v, source[i], strict=True) if src == 1]
        if k > m or any(c not in leased for c in back):
            return None
        front = tuple(c for c in leased if c in back) + ready
        if front[:k] != v or (len(front) != k and k != m):
            return None
        new_ready = front[k:]
        new_leased = list(leased)
        for c, final in zip(v, settled[i], strict=True):
            if not again[c]:
                continue
            if delivered_by[c] & ~done:
                # delivered again later: this lease runs out, which it cannot if an ack settled it
                if final:
                    return None
                if c not in new_leased:
                    new_leased.append(c)
            elif c in new_leased:
                new_leased.remove(c)
        return new_ready, canonical(tuple(new_leased))

    def take_unknown(i: int, ready: State, leased: State) -> list[tuple[State, State]]:
        m = maxm[i]
        t = len(ready) if m == 0 else min(m, len(ready))
        sizes = [t]
        if several[i] and m != 0:
            sizes = sorted({min(m - s, len(ready)) for s in range(min(len(leased), m - 1) + 1)}, reverse=True)
        options: list[tuple[State, State]] = []
        for size in sizes:
            # an unknown dequeue that takes nothing is the same as one that never took effect: skip it
            if size and not any(pinned[c] for c in ready[:size]):
                options.append((ready[size:], canonical(leased + tuple(c for c in ready[:size] if again[c]))))
        return options

    # A value at the head that no ok dequeue can take (one no ok dequeue returned, or one only the drain read, not
    # for the first time) leaves through the next unknown dequeue to take effect, if any. When every unknown dequeue
    # takes one value, that is the next one in the gate order (invoke order), and it may as well take effect at
    # once: until it does no other value can leave, and with the head gone each later step is as possible as before
    # (the drain takes such a value back from its lease). So at such a node it is the only candidate.
    unknown_takes = [c == 0 or (merged[c] and not frozen[c]) for c in range(len(names))]
    clears_head = [False] * len(names)
    if prune and all(maxm[i] == 1 for i in range(n) if not kinds[i] and not known[i]):
        clears_head = unknown_takes

    def only_candidate(ready: State, linearized: int) -> int:
        """The call entry that is the only candidate at this node, or -1: any may be."""
        if not ready or not clears_head[ready[0]]:
            return -1
        e = nxt[head]
        while e != tail and is_call[e]:
            i = entry_op[e]
            if not kinds[i] and not known[i] and linearized & gate[i] == gate[i]:
                return e
            e = nxt[e]
        return -1

    remaining = sum(known)
    ready: State = ()
    leased: State = ()
    only = -1
    linearized = 0
    # (lifted call entry, queue before it, pass it was tried in)
    stack: list[tuple[int, State, State, int]] = []
    cache: set[tuple[int, State, State]] = set()
    best: list[int] = []
    best_state: State = ()
    steps = 0
    entry = nxt[head]
    # Each node scans the candidates (the calls before the first return entry) in three passes: ok ops, then unknown
    # ones, then enqueues of values no dequeue returned, or only the drain not for the first time (best placed late:
    # ahead of others, they would have to be taken by an unknown dequeue). The order changes only how soon a valid
    # history is explained.
    phase_of = [0 if known[i] else 1 for i in range(n)]
    for i in range(n):
        if kinds[i] and unknown_takes[vals[i][0]]:
            phase_of[i] = 2
    phase = 0
    while remaining:
        steps += 1
        if steps > max_steps:
            return _Outcome("unknown", steps, best, [names[c] for c in best_state])
        if is_call[entry]:
            i = entry_op[entry]
            if phase_of[i] != phase or linearized & gate[i] != gate[i] or (only >= 0 and entry != only):
                entry = nxt[entry]
                continue
            v = vals[i]
            options: list[tuple[State, State]]
            if kinds[i]:
                at = next((p for p, c in enumerate(ready) if frozen[c]), -1) if any_frozen else -1
                if at < 0:
                    options = [(ready + v, leased)]
                else:
                    options = [(ready[: at + 1] + tuple(sorted(ready[at + 1 :] + v)), leased)]
            elif not known[i]:
                options = take_unknown(i, ready, leased)
            elif leasing[i]:
                taken = take_known(i, ready, leased, linearized)
                options = [taken] if taken is not None else []
            else:
                k = len(v)
                m = maxm[i]
                if m == 0:
                    ok = len(ready) == k and tuple(sorted(ready)) == drain_vals[i]
                else:
                    ok = k <= m and ready[:k] == v and (len(ready) == k or k == m)
                options = [(ready[k:], leased)] if ok else []
            new_lin = linearized | bits[i]
            chosen = next(((r, le) for r, le in options if (new_lin, r, le) not in cache), None)
            if chosen is not None:
                cache.add((new_lin, *chosen))
                stack.append((entry, ready, leased, phase))
                ready, leased = chosen
                linearized = new_lin
                # lift the call and its return out of the list
                r = match[entry]
                nxt[prv[entry]] = nxt[entry]
                prv[nxt[entry]] = prv[entry]
                nxt[prv[r]] = nxt[r]
                prv[nxt[r]] = prv[r]
                if known[i]:
                    remaining -= 1
                if len(stack) > len(best):
                    best = [entry_op[e] for e, _, _, _ in stack]
                    best_state = ready
                entry = nxt[head]
                only = only_candidate(ready, linearized)
                phase = 0 if only < 0 else phase_of[entry_op[only]]
                continue
            entry = nxt[entry]
        elif phase < 2:
            # the first return entry: this pass over the candidates is done; the next one
            phase += 1
            entry = nxt[head]
        else:
            # the return of an op not linearized yet: nothing before it can be tried any more; backtrack
            if not stack:
                return _Outcome("fail", steps, best, [names[c] for c in best_state])
            entry, ready, leased, phase = stack.pop()
            i = entry_op[entry]
            linearized &= ~bits[i]
            if known[i]:
                remaining += 1
            r = match[entry]
            nxt[prv[r]] = r
            prv[nxt[r]] = r
            nxt[prv[entry]] = entry
            prv[nxt[entry]] = entry
            only = only_candidate(ready, linearized)
            if not several[i]:
                # else try the op again: its next option not tried yet from here, if any
                entry = nxt[entry]
    return _Outcome("ok", steps, [entry_op[e] for e, _, _, _ in stack], [names[c] for c in ready])


def _prefix(ops: Sequence[QueueOp], cut: int) -> list[QueueOp]:
    """The ops invoked up to event ``cut``; those completing after it become pending (unknown)."""
    out: list[QueueOp] = []
    for op in ops:
        if op.call > cut:
            continue
        if op.known and op.ret is not None and op.ret > cut:
            values = op.values if op.kind == "enqueue" else ()
            out.append(replace(op, id=len(out), known=False, values=values, ret=None, counts=(), settled=()))
        else:
            out.append(replace(op, id=len(out)))
    return out


def _run(ops: Sequence[QueueOp], max_steps: int, *, prune: bool = True) -> tuple[_Outcome, list[QueueOp]]:
    """Searches the normalized ops; the outcome's order indexes the returned (normalized) list."""
    normal = _normalize(ops)
    return _search(normal, max_steps, prune=prune), normal


def _delivered_twice(v: str, deqs: Sequence[QueueOp]) -> tuple[QueueOp, QueueOp, str] | None:
    """For a value delivered again, two of its ok deliveries that cannot both be (``deqs``: the ok dequeues that
    returned it, in invoke order): two first deliveries, or one that ended its lease for good (an ack answered
    ``acked``, or the drain read it) completed before the other was invoked."""
    firsts = [d for d in deqs if any(x == v and d.count(p) <= 1 for p, x in enumerate(d.values))]
    if len(firsts) > 1:
        return firsts[0], firsts[1], "both are first deliveries (delivery_count 1)"
    for d1 in deqs:
        if d1.ret is None or not any(x == v and d1.lease_settled(p) for p, x in enumerate(d1.values)):
            continue
        for d2 in deqs:
            if d2 is not d1 and d1.ret < d2.call:
                why = "the drain read it" if d1.max_messages == 0 else "an ack of the first answered acked"
                return d1, d2, f"{why}, so it was deleted, yet it was delivered again after"
    return None


def _find_pattern(ops: Sequence[QueueOp]) -> Counterexample | None:
    """Known shapes of violation, each of which alone proves the history is not linearizable.

    They need no search, so a violation in a long history is found at once, and they name the few operations
    involved. "Unique" values are enqueued by exactly one op. For a value ``v`` definitely enqueued (``E_v`` ok),
    ``gone(v)`` is the earliest moment it may have left the queue: the invoke of the ok dequeue that returned it,
    else the earliest invoke of an unknown dequeue (never, if there is none).

    A value delivered again (:func:`_redelivered`) may also have left earlier, leased by an unknown dequeue: its
    ``gone(v)`` is the earlier of the two.

    - fresh: an ok dequeue returned a value never enqueued, or (unique) enqueued only after the dequeue completed.
    - repeat: a unique value returned twice by ok dequeues (one dequeue, or two: for a value delivered again, two
      first deliveries (delivery_count 1), or a delivery whose lease an ack settled (or the drain's) completed
      before another one was invoked).
    - fifo-order: ``E_a`` completed before ``E_b`` was invoked (so ``a`` was ahead of ``b``), and the ok dequeue of
      ``b`` completed before ``gone(a)``; or one receive returned ``b`` before ``a``.
    - not-empty: an ok dequeue returned fewer values than it asked for (so it saw the queue hold only those), yet
      some value ``v`` was in the queue throughout: ``E_v`` completed before it was invoked and ``gone(v)`` is after
      it completed.
    """
    enq_of: dict[str, list[QueueOp]] = {}
    for op in ops:
        if op.kind == "enqueue":
            enq_of.setdefault(op.values[0], []).append(op)
    deq_of: dict[str, list[QueueOp]] = {}
    for op in ops:
        if op.kind == "dequeue" and op.known and op.ret is not None:
            for v in dict.fromkeys(op.values):
                deq_of.setdefault(v, []).append(op)
    again = _redelivered(ops)

    def cex(kind: str, failing: QueueOp, involved: Sequence[QueueOp], message: str) -> Counterexample:
        assert failing.ret is not None
        described = [op.describe() for op in sorted(set(involved), key=lambda o: o.call)]
        return Counterexample(kind, failing.describe(), failing.ret, described, message)

    for v, deqs in deq_of.items():
        d = deqs[0]
        assert d.ret is not None
        if v not in enq_of:
            return cex("fresh", d, [d], f"{d.describe()} returned {v!r}, which no enqueue on this queue attempted")
        if len(enq_of[v]) != 1:
            continue
        e = enq_of[v][0]
        late = [x for x in deqs if x.ret is not None and x.ret < e.call]
        if late:
            return cex(
                "fresh",
                late[0],
                [late[0], e],
                f"{late[0].describe()} returned {v!r}, but {e.describe()} was invoked only after it completed",
            )
        dup = next((x for x in deqs if x.values.count(v) > 1), None)
        if dup is not None:
            return cex(
                "repeat",
                dup,
                [e, dup],
                f"{v!r} was enqueued once ({e.describe()}) but {dup.describe()} returned it twice",
            )
        if v in again:
            twice = _delivered_twice(v, deqs)
            if twice is not None:
                d1, d2, why = twice
                return cex(
                    "repeat",
                    max(d1, d2, key=lambda x: x.ret or 0),
                    [e, d1, d2],
                    f"{v!r} was enqueued once ({e.describe()}) and delivered by {d1.describe()} and by "
                    f"{d2.describe()}: {why}",
                )
            continue
        if len(deqs) > 1:
            second = deqs[1]
            return cex(
                "repeat",
                max(deqs[:2], key=lambda x: x.ret or 0),
                [e, deqs[0], second],
                f"{v!r} was enqueued once ({e.describe()}) but returned twice: by {deqs[0].describe()} and by "
                f"{second.describe()}",
            )

    unique_known = {v: es[0] for v, es in enq_of.items() if len(es) == 1 and es[0].known and es[0].ret is not None}
    unknown_deqs = [op for op in ops if op.kind == "dequeue" and not op.known]
    first_unknown = min(unknown_deqs, key=lambda o: o.call) if unknown_deqs else None

    def gone(v: str) -> tuple[float, QueueOp | None]:
        if v in deq_of and (v not in again or first_unknown is None or deq_of[v][0].call < first_unknown.call):
            return float(deq_of[v][0].call), deq_of[v][0]
        return (float(first_unknown.call), first_unknown) if first_unknown else (float("inf"), None)

    def why_gone(v: str, by: QueueOp | None) -> str:
        if by is not None and by.known:
            return f"the dequeue that returned it, {by.describe()}, was invoked later"
        if by is not None:
            returned = (
                f"the first dequeue that returned it, {deq_of[v][0].describe()}, and "
                if v in deq_of
                else "no ok dequeue returned it, and "
            )
            return f"{returned}the first unknown dequeue, {by.describe()}, were invoked later"
        return "no dequeue returned it or could have taken it"

    # a was ahead of b, yet b left before a could have
    ahead = sorted((e.ret or 0, v) for v, e in unique_known.items())
    behind = sorted((enq_of[v][0].call, v) for v, ds in deq_of.items() if len(enq_of.get(v, ())) == 1)
    best: tuple[float, str] | None = None
    pos = 0
    for b_call, b in behind:
        while pos < len(ahead) and ahead[pos][0] < b_call:
            a = ahead[pos][1]
            g, _ = gone(a)
            if best is None or g > best[0]:
                best = (g, a)
            pos += 1
        d_b = deq_of[b][0]
        if best is not None and d_b.ret is not None and best[0] > d_b.ret:
            a = best[1]
            _, by = gone(a)
            e_a, e_b = unique_known[a], enq_of[b][0]
            return cex(
                "fifo-order",
                d_b,
                [e_a, e_b, d_b, *([by] if by else [])],
                f"{e_a.describe()} completed before {e_b.describe()} was invoked, so {a!r} was ahead of {b!r}; "
                f"but {d_b.describe()} returned {b!r} before {a!r} could have left the queue: {why_gone(a, by)}",
            )
    for d in ops:
        if d.kind != "dequeue" or not d.known or d.ret is None or d.max_messages == 0:
            continue  # (a drain's result is not in FIFO order)
        for i, x in enumerate(d.values):
            for y in d.values[i + 1 :]:
                e_y, e_x = unique_known.get(y), enq_of.get(x, [None])[0]
                if e_y is not None and e_x is not None and e_y.ret is not None and e_y.ret < e_x.call:
                    return cex(
                        "fifo-order",
                        d,
                        [e_y, e_x, d],
                        f"{e_y.describe()} completed before {e_x.describe()} was invoked, so {y!r} was ahead of "
                        f"{x!r}; but {d.describe()} returned {x!r} first",
                    )
    # a dequeue that saw the queue hold only what it returned, while v was there throughout
    prefix_max: list[tuple[float, str]] = []
    for _, v in ahead:
        g, _ = gone(v)
        prefix_max.append(max(prefix_max[-1], (g, v)) if prefix_max else (g, v))
    rets = [r for r, _ in ahead]
    for d in ops:
        if d.kind != "dequeue" or not d.known or d.ret is None:
            continue
        if d.max_messages != 0 and len(d.values) >= d.max_messages:
            continue
        n = bisect.bisect_left(rets, d.call)
        if n and prefix_max[n - 1][0] > d.ret:
            v = prefix_max[n - 1][1]
            _, by = gone(v)
            e_v = unique_known[v]
            took = "everything" if d.max_messages == 0 else f"fewer than {d.max_messages} values"
            return cex(
                "not-empty",
                d,
                [e_v, d, *([by] if by else [])],
                f"{d.describe()} took {took}, so the queue held only {list(d.values)!r}; but {v!r} was in it "
                f"throughout: {e_v.describe()} completed before the dequeue was invoked, and {why_gone(v, by)}",
            )
    return None


def check_fifo_linearizable(
    ops: Sequence[QueueOp],
    *,
    queue: str | None = None,
    max_steps: int = DEFAULT_MAX_STEPS,
    use_patterns: bool = True,
) -> LinearResult:
    """Checks model operations (see :func:`queue_ops`) against the FIFO queue model.

    First the violation patterns (:func:`_find_pattern`; ``use_patterns=False`` skips them, for tests), then the
    search.
    """
    ops = [replace(op, id=i) for i, op in enumerate(sorted(ops, key=lambda o: o.call))]
    unknown = sum(not op.known for op in ops)
    if use_patterns:
        pattern = _find_pattern(_normalize(ops))
        if pattern is not None:
            message = f"not linearizable ({pattern.kind}): {pattern.message}"
            return LinearResult(False, queue, len(ops), unknown, 0, message, counterexample=pattern)

    full, normal = _run(ops, max_steps)
    steps = full.steps
    if full.status == "ok":
        order = [normal[i] for i in full.order]
        return LinearResult(
            True,
            queue,
            len(ops),
            unknown,
            steps,
            "linearizable",
            linearization=[op.describe() for op in order],
            witness_calls=[op.call for op in order],
        )
    if full.status == "unknown":
        reason = f"search budget of {max_steps} steps exhausted"
        return LinearResult("unknown", queue, len(ops), unknown, steps, reason)

    # Not linearizable: find the shortest failing prefix (binary search over completions). The explanation gets
    # another max_steps in all; when they run out, the shortest failing prefix found so far is reported.
    budget = max_steps
    returns = sorted(op.ret for op in ops if op.known and op.ret is not None)
    lo, hi = -1, len(returns) - 1
    shortest = True
    while hi - lo > 1:
        if budget <= 0:
            shortest = False
            break
        mid = (lo + hi) // 2
        probe, _ = _run(_prefix(ops, returns[mid]), budget)
        steps += probe.steps
        budget -= probe.steps
        if probe.status == "unknown":
            shortest = False
            break
        if probe.status == "fail":
            hi = mid
        else:
            lo = mid
    cut = returns[hi]
    prefix = _prefix(ops, cut)
    # Once more without pruning, for a plain partial linearization to show (the pruned search gives up sooner);
    # if that runs out of budget, the pruned one's.
    failing, normal = _run(prefix, max(budget, max_steps // 10), prune=False)
    steps += failing.steps
    if failing.status == "unknown":
        failing, normal = _run(prefix, max_steps // 10)
        steps += failing.steps
    culprit = next(op for op in ops if op.known and op.ret == cut)
    partial = [normal[i].describe() for i in failing.order]
    message = (
        f"not linearizable: no order of the {len(prefix)} operations invoked up to event {cut} explains "
        f"{culprit.describe()}; the deepest partial linearization has {len(partial)} operations and leaves the "
        f"queue as {failing.state!r}"
    )
    cex = Counterexample(
        "search",
        culprit.describe(),
        cut,
        [p.describe() for p in prefix],
        message,
        shortest,
        partial,
        failing.state,
    )
    return LinearResult(False, queue, len(ops), unknown, steps, message, counterexample=cex)


def check_queue_linearizable(
    history: Sequence[Event] | Sequence[Operation],
    queue: str,
    *,
    include_drain: bool = False,
    max_steps: int = DEFAULT_MAX_STEPS,
) -> LinearResult:
    """Checks one queue of a history (see the module's docstring for what the model covers)."""
    got = _extract(history, queue, include_drain=include_drain)
    ops = got.ops
    unknown = sum(not op.known for op in ops)
    if got.lost and got.drain is not None:
        lost = got.lost[0]
        drain = got.drain
        assert lost.ack.end is not None
        message = (
            f"not linearizable (lost): {lost.ack.describe()} answered stale for {lost.body!r}, which "
            f"{lost.receive.describe()} returned, and no other ack of that receipt may have acked it: its lease ran "
            f"out with the message not deleted, yet no later receive and not {drain.describe()} got it again"
        )
        described = [lost.receive.describe(), lost.ack.describe(), drain.describe()]
        cex = Counterexample("lost", lost.ack.describe(), lost.ack.end, described, message)
        return LinearResult(False, queue, len(ops), unknown, 0, message, counterexample=cex)
    if got.outside:
        outside = got.outside
        reason = "history outside the model: " + "; ".join(outside[:5]) + (" ..." if len(outside) > 5 else "")
        return LinearResult("unknown", queue, len(ops), unknown, 0, reason)
    return check_fifo_linearizable(ops, queue=queue, max_steps=max_steps)


def check_linearizable(
    history: Sequence[Event] | Sequence[Operation],
    queues: Sequence[str] | None = None,
    *,
    include_drain: bool = False,
    max_steps: int = DEFAULT_MAX_STEPS,
) -> LinearizabilityResult:
    """Checks each queue (default: every queue with an enqueue or receive) on its own."""
    ops = as_operations(history)
    if queues is None:
        queues = sorted({op.queue for op in ops if op.queue is not None and op.f in ("enqueue", "receive")})
    results = {q: check_queue_linearizable(ops, q, include_drain=include_drain, max_steps=max_steps) for q in queues}
    return LinearizabilityResult(merge_validity([r.valid for r in results.values()]), results)


__all__ = [
    "Counterexample",
    "HistoryError",
    "LinearResult",
    "LinearizabilityResult",
    "QueueOp",
    "check_fifo_linearizable",
    "check_linearizable",
    "check_queue_linearizable",
    "merge_validity",
    "queue_ops",
]
