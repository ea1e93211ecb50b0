"""Linearizability of a FIFO queue: a Wing & Gong search with Lowe's memoization (as in Porcupine and Knossos).

Checks each queue of a recorded history against a FIFO queue model: the model, how a history maps onto it
(leases that run out, idempotent retries), the violation patterns tried first, the search and its exact
prunings, and how a counterexample is found are described in chaos/DESIGN.md, "The linearizability checker".
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
    #: stale ack no earlier attempt explains, and the message never delivered again: see chaos/DESIGN.md)
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
    lease (see *Leases that run out* in chaos/DESIGN.md). Messages certainly lost are reported by
    :func:`check_queue_linearizable`, not here.
    """
    got = _extract(history, queue, include_drain=include_drain)
    return got.ops, got.outside


def _extract(history: Sequence[Event] | Sequence[Operation], queue: str, *, include_drain: bool) -> _Extracted:
    reader = _Reader(include_drain=include_drain)
    for op in as_operations(history):
        if op.queue == queue and op.type != "fail":
            reader.read(op)
    return reader.finish()


class _Reader:
    """Reads one queue's operations (see :func:`_extract`), in invoke order, into model ops."""

    def __init__(self, *, include_drain: bool) -> None:
        self.include_drain = include_drain
        self.out: list[QueueOp] = []
        #: (idempotency key, body) -> the enqueue requests with that key: one logical enqueue
        self.keyed: dict[tuple[str, str], list[Operation]] = {}
        self.outside: list[str] = []
        #: receipt -> (index in out of the ok receive that returned it, position in its result)
        self.receipts: dict[str, tuple[int, int]] = {}
        #: receipt -> every ack that may have reached the server: (ack, its answer for the receipt, None if unknown)
        self.attempts: dict[str, list[tuple[Operation, str | None]]] = {}
        self.drain_at: int | None = None

    def read(self, op: Operation) -> None:
        if op.f == "enqueue":
            self._enqueue(op)
        elif op.f == "receive" or (op.f == "drain" and self.include_drain and op.type == "ok"):
            self._dequeue(op)
        elif op.f in ("nack", "extend"):
            self.outside.append(f"{op.describe()} is outside the model")
        elif op.f == "ack":
            if op.ok:
                for r, outcome in settle_outcomes(op):
                    self.attempts.setdefault(r, []).append((op, outcome))
            else:
                for r in settle_receipts(op):
                    self.attempts.setdefault(r, []).append((op, None))

    def _enqueue(self, op: Operation) -> None:
        inv = op.invoke.value
        if isinstance(inv, dict) and inv.get("delay_s") not in (None, 0, 0.0):
            self.outside.append(f"{op.describe()} has a delay")
        v = enqueue_value(op)
        if v.key is not None:
            self.keyed.setdefault((v.key, v.body), []).append(op)
        else:
            self.out.append(QueueOp(0, op.process, "enqueue", (v.body,), 1, op.type == "ok", op.start, op.end))

    def _dequeue(self, op: Operation) -> None:
        got = deliveries(op)
        values = tuple(d.body for d in got)
        counts = tuple(max(1, d.delivery_count or 1) for d in got)
        if op.f == "drain":
            self.drain_at = len(self.out)
            m = 0
        else:
            m = receive_max_messages(op)
            for pos, d in enumerate(got):
                if d.receipt is not None:
                    self.receipts[d.receipt] = (len(self.out), pos)
        counted = counts if any(c > 1 for c in counts) else ()
        known = op.type == "ok"
        self.out.append(QueueOp(0, op.process, "dequeue", values, m, known, op.start, op.end, counts=counted))

    def finish(self) -> _Extracted:
        out = self.out
        settled, lost, unexplained = _read_acks(out, self.receipts, self.attempts, has_drain=self.drain_at is not None)
        self.outside.extend(unexplained)
        for i, qop in enumerate(out):
            if qop.kind == "dequeue" and qop.known and qop.max_messages != 0:
                flags = tuple((i, pos) in settled for pos in range(len(qop.values)))
                if any(flags):
                    out[i] = replace(qop, settled=flags)
        drain = out[self.drain_at] if self.drain_at is not None else None
        out.extend(self._logical_enqueues())
        self.outside.extend(self._redelivered_outside())
        out.sort(key=lambda o: o.call)
        return _Extracted([replace(op, id=i) for i, op in enumerate(out)], self.outside, lost, drain)

    def _logical_enqueues(self) -> list[QueueOp]:
        """One op per idempotency key: see :func:`queue_ops`."""
        enqueues: list[QueueOp] = []
        for (_, body), tries in self.keyed.items():
            oks = [a for a in tries if a.ok and a.end is not None]
            first_ok = min(oks, key=lambda a: a.end or 0) if oks else None
            process = first_ok.process if first_ok else tries[0].process
            call = min(a.start for a in tries)
            ret = first_ok.end if first_ok else None
            enqueues.append(QueueOp(0, process, "enqueue", (body,), 1, first_ok is not None, call, ret, len(tries)))
        return enqueues

    def _redelivered_outside(self) -> list[str]:
        """Redeliveries of a body more than one logical enqueue appended, which the model does not follow."""
        out = self.out
        enqueued = Counter(q.values[0] for q in out if q.kind == "enqueue")
        again = sorted(
            {v for q in out if q.kind == "dequeue" and q.known for p, v in enumerate(q.values) if q.count(p) > 1}
        )
        return [
            f"{v!r} was delivered again (delivery_count > 1) but enqueued by {enqueued[v]} logical enqueues: "
            "redeliveries are followed only for bodies enqueued once"
            for v in again
            if enqueued[v] > 1
        ]


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
    _gate_interchangeable(ops, gate)
    _gate_fifo(ops, gate)
    return gate


def _gate_interchangeable(ops: Sequence[QueueOp], gate: list[int]) -> None:
    """Interchangeable unknown ops go in invoke order."""
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


def _gate_fifo(ops: Sequence[QueueOp], gate: list[int]) -> None:
    """Values that left the queue first were enqueued first."""
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
    #: (the enqueue of a, (the dequeue of its first delivery, a's position in its result))
    unique = [(enq_of[v][0], first_of[v][0]) for v in enq_of if len(enq_of[v]) == 1 and len(first_of.get(v, ())) == 1]
    if not any(op.kind == "dequeue" and not op.known for op in ops):
        # nothing can remove a value no ok dequeue returned: it stays behind every value that is dequeued
        observed = 0
        for ea, _ in unique:
            observed |= 1 << ea
        for i, op in enumerate(ops):
            if op.kind == "enqueue" and op.values[0] not in deq_of:
                gate[i] |= observed
    _gate_left_first(ops, unique, gate)


def _gate_left_first(ops: Sequence[QueueOp], unique: list[tuple[int, tuple[int, int]]], gate: list[int]) -> None:
    """For unique values with a first delivery (see :func:`_gate_fifo`): ``a`` left first, so it was enqueued
    first."""
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


UNOBSERVED = "*"
#: in a state: a value only the drain read
DRAINED = "+"
#: in a state: a value only the drain read, not for the first time
DRAINED_AGAIN = "++"
State = tuple[int, ...]


class _Entries:
    """The doubly linked list of call and return entries the search walks, in time order (Porcupine's). Entry
    ``2n`` is the head and ``2n + 1`` the tail; a linearized op's two entries are lifted out, and put back when the
    search backtracks."""

    def __init__(self, ops: Sequence[QueueOp]) -> None:
        n = len(ops)
        inf = float("inf")
        keyed = sorted(
            [(float(op.call), 0, i) for i, op in enumerate(ops)]
            + [(float(op.ret) if op.known and op.ret is not None else inf, 1, i) for i, op in enumerate(ops)]
        )
        self.head, self.tail = 2 * n, 2 * n + 1
        self.nxt = [0] * (2 * n + 2)
        self.prv = [0] * (2 * n + 2)
        self.entry_op = [0] * (2 * n)
        self.is_call = [False] * (2 * n)
        call_pos = [0] * n
        ret_pos = [0] * n
        for pos, (_, kind, i) in enumerate(keyed):
            self.entry_op[pos] = i
            self.is_call[pos] = kind == 0
            if kind == 0:
                call_pos[i] = pos
            else:
                ret_pos[i] = pos
        chain = [self.head, *range(2 * n), self.tail]
        for a, b in itertools.pairwise(chain):
            self.nxt[a] = b
            self.prv[b] = a
        #: call entry -> its return entry
        self.match = [0] * (2 * n)
        for i in range(n):
            self.match[call_pos[i]] = ret_pos[i]

    def first(self) -> int:
        return self.nxt[self.head]

    def lift(self, entry: int) -> None:
        """Lifts a call entry and its return out of the list."""
        nxt, prv, r = self.nxt, self.prv, self.match[entry]
        nxt[prv[entry]] = nxt[entry]
        prv[nxt[entry]] = prv[entry]
        nxt[prv[r]] = nxt[r]
        prv[nxt[r]] = prv[r]

    def restore(self, entry: int) -> None:
        """Puts back what :meth:`lift` took out (the reverse order of the lifts)."""
        nxt, prv, r = self.nxt, self.prv, self.match[entry]
        nxt[prv[r]] = r
        prv[nxt[r]] = r
        nxt[prv[entry]] = entry
        prv[nxt[entry]] = entry


@dataclass(frozen=True)
class _Coding:
    """The values of a search coded as small integers (see :func:`_code_values`)."""

    codes: dict[str, int]
    #: code -> the value, or UNOBSERVED, DRAINED or DRAINED_AGAIN for the merged ones
    names: list[str]
    merged: list[bool]

    def new_code(self, name: str, *, merged: bool) -> int:
        self.names.append(name)
        self.merged.append(merged)
        return len(self.names) - 1


def _code_values(ops: Sequence[QueueOp], enqueues: Counter[str], *, prune: bool) -> _Coding:
    """Values no ok dequeue returned are all coded 0: nothing can tell them apart (an unknown dequeue takes whatever
    is at the head), and merging them keeps states that differ only in their order from being searched twice.
    Likewise the values enqueued once that only the drain read: the first deliveries among them stay in the queue
    until the drain (nothing else can take them, see ``pinned``); the others too, or an unknown dequeue leased
    them. The drain takes them all whatever their order, from the queue or back from a lease. (Two codes.)"""
    returns = Counter(value for op in ops if op.kind == "dequeue" and op.known for value in op.values)
    coding = _Coding({}, [UNOBSERVED], [False])
    for op in ops:
        if (op.kind == "dequeue" and op.known) or not prune:
            drained = [0, 0]
            for pos, value in enumerate(op.values):
                if value in coding.codes:
                    continue
                if prune and op.max_messages == 0 and enqueues[value] == returns[value] == 1:
                    first = op.count(pos) <= 1
                    if not drained[first]:
                        drained[first] = coding.new_code(DRAINED if first else DRAINED_AGAIN, merged=True)
                    coding.codes[value] = drained[first]
                else:
                    coding.codes[value] = coding.new_code(value, merged=False)
    return coding


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
    return _Search(ops, prune=prune).run(max_steps)


class _Search:
    """One run of :func:`_search`: the tables it reads, built once from the ops, and the state it walks."""

    def __init__(self, ops: Sequence[QueueOp], *, prune: bool) -> None:
        n = len(ops)
        self.entries = _Entries(ops)
        self.gate = _gates(ops) if prune else [0] * n
        self.kinds = [op.kind == "enqueue" for op in ops]
        self.maxm = [op.max_messages for op in ops]
        self.known = [op.known for op in ops]
        self.bits = [1 << i for i in range(n)]
        enqueues = Counter(op.values[0] for op in ops if op.kind == "enqueue")
        coding = _code_values(ops, enqueues, prune=prune)
        self.names, self.merged = coding.names, coding.merged
        self.vals = [tuple(coding.codes.get(value, 0) for value in op.values) for op in ops]
        self.drain_vals = [tuple(sorted(v)) for v in self.vals]
        self._read_leases(ops, coding.codes)
        self._read_pruning(enqueues, coding.codes, prune=prune)
        # the state of the walk
        self.ready: State = ()
        self.leased: State = ()
        self.linearized = 0
        self.remaining = sum(self.known)
        #: the only candidate at this node (see :meth:`_only_candidate`), or -1
        self.only = -1
        #: (lifted call entry, queue before it, pass it was tried in)
        self.stack: list[tuple[int, State, State, int]] = []
        self.cache: set[tuple[int, State, State]] = set()
        self.best: list[int] = []
        self.best_state: State = ()
        self.entry = self.entries.first()
        self.phase = 0

    def _read_leases(self, ops: Sequence[QueueOp], codes: dict[str, int]) -> None:
        """The tables about values delivered again, which may be leased: taken, and back at the head before their
        next delivery."""
        n, kinds, known, vals = len(ops), self.kinds, self.known, self.vals
        self.again = again = [False] * len(self.names)
        for value in _redelivered(ops):
            again[codes[value]] = True
        #: for a value delivered again: the ok dequeues that deliver it
        self.delivered_by = [0] * len(self.names)
        self.first_delivery = [False] * len(self.names)
        for i, op in enumerate(ops):
            if kinds[i] or not known[i]:
                continue
            for pos, c in enumerate(vals[i]):
                self.delivered_by[c] |= self.bits[i]
                self.first_delivery[c] = self.first_delivery[c] or op.count(pos) <= 1
        #: known dequeues that deliver a value that may be leased: the slow path
        self.leasing = [not kinds[i] and known[i] and any(again[c] for c in vals[i]) for i in range(n)]
        #: per position: 0 the value was never taken before (delivery_count 1), 1 it was (a receive's redelivery),
        #: 2 either (the drain's: its own expired lease may explain the count)
        self.source = [
            tuple(
                0 if op.count(p) <= 1 or not again[c] else 2 if op.max_messages == 0 else 1
                for p, c in enumerate(vals[i])
            )
            for i, op in enumerate(ops)
        ]
        self.settled = [tuple(op.lease_settled(p) for p in range(len(op.values))) for op in ops]
        # Unknown dequeues of several values can take fewer ready values when leased ones come back first: try each.
        self.several = [not kinds[i] and not known[i] and self.maxm[i] != 1 and any(again) for i in range(n)]

    def _read_pruning(self, enqueues: Counter[str], codes: dict[str, int], *, prune: bool) -> None:
        """The tables of the exact prunings, and the pass each op is tried in."""
        n, names, merged, kinds, known = len(self.kinds), self.names, self.merged, self.kinds, self.known
        # A value enqueued once whose first lease an ok dequeue returned (delivery_count 1) was in the ready queue
        # until that dequeue: an unknown dequeue that would take it cannot be part of a linearization.
        self.pinned = [False] * len(names)
        for value, c in codes.items():
            self.pinned[c] = prune and enqueues[value] == 1 and self.first_delivery[c]
        # A value only the drain read, for the first time, stays in the queue until the drain, and so does
        # everything behind it: only the drain takes those, whatever their order. So what is behind it is kept
        # sorted.
        self.frozen = [merged[c] and names[c] == DRAINED for c in range(len(names))]
        self.any_frozen = any(self.frozen)
        # A value at the head that no ok dequeue can take (one no ok dequeue returned, or one only the drain read,
        # not for the first time) leaves through the next unknown dequeue to take effect, if any. When every unknown
        # dequeue takes one value, that is the next one in the gate order (invoke order), and it may as well take
        # effect at once: until it does no other value can leave, and with the head gone each later step is as
        # possible as before (the drain takes such a value back from its lease). So at such a node it is the only
        # candidate.
        unknown_takes = [c == 0 or (merged[c] and not self.frozen[c]) for c in range(len(names))]
        self.clears_head = [False] * len(names)
        if prune and all(self.maxm[i] == 1 for i in range(n) if not kinds[i] and not known[i]):
            self.clears_head = unknown_takes
        # Each node scans the candidates (the calls before the first return entry) in three passes: ok ops, then
        # unknown ones, then enqueues of values no dequeue returned, or only the drain not for the first time (best
        # placed late: ahead of others, they would have to be taken by an unknown dequeue). The order changes only
        # how soon a valid history is explained.
        self.phase_of = [0 if known[i] else 1 for i in range(n)]
        for i in range(n):
            if kinds[i] and unknown_takes[self.vals[i][0]]:
                self.phase_of[i] = 2

    def run(self, max_steps: int) -> _Outcome:
        entries = self.entries
        steps = 0
        while self.remaining:
            steps += 1
            if steps > max_steps:
                return _Outcome("unknown", steps, self.best, self._named(self.best_state))
            if entries.is_call[self.entry]:
                if not self._linearize(self.entry):
                    self.entry = entries.nxt[self.entry]
            elif self.phase < 2:
                # the first return entry: this pass over the candidates is done; the next one
                self.phase += 1
                self.entry = entries.first()
            elif self.stack:
                # the return of an op not linearized yet: nothing before it can be tried any more
                self._backtrack()
            else:
                return _Outcome("fail", steps, self.best, self._named(self.best_state))
        return _Outcome("ok", steps, [entries.entry_op[e] for e, _, _, _ in self.stack], self._named(self.ready))

    def _named(self, state: State) -> list[str]:
        return [self.names[c] for c in state]

    def _linearize(self, entry: int) -> bool:
        """Linearizes the op of a call entry, if it is a candidate in this pass and takes the model to a state not
        seen yet with the same ops linearized; then the next node starts at the head."""
        i = self.entries.entry_op[entry]
        gate = self.gate[i]
        if self.phase_of[i] != self.phase or self.linearized & gate != gate or (self.only >= 0 and entry != self.only):
            return False
        new_lin = self.linearized | self.bits[i]
        chosen = next(((r, le) for r, le in self._options(i) if (new_lin, r, le) not in self.cache), None)
        if chosen is None:
            return False
        self.cache.add((new_lin, *chosen))
        self.stack.append((entry, self.ready, self.leased, self.phase))
        self.ready, self.leased = chosen
        self.linearized = new_lin
        self.entries.lift(entry)
        if self.known[i]:
            self.remaining -= 1
        if len(self.stack) > len(self.best):
            self.best = [self.entries.entry_op[e] for e, _, _, _ in self.stack]
            self.best_state = self.ready
        self.entry = self.entries.first()
        self.only = self._only_candidate()
        self.phase = 0 if self.only < 0 else self.phase_of[self.entries.entry_op[self.only]]
        return True

    def _backtrack(self) -> None:
        entry, self.ready, self.leased, self.phase = self.stack.pop()
        i = self.entries.entry_op[entry]
        self.linearized &= ~self.bits[i]
        if self.known[i]:
            self.remaining += 1
        self.entries.restore(entry)
        self.only = self._only_candidate()
        # an op with several options is tried again: its next option not tried yet from here, if any
        self.entry = entry if self.several[i] else self.entries.nxt[entry]

    def _options(self, i: int) -> list[tuple[State, State]]:
        """The (ready, leased) states op ``i`` can lead to from the current one; none: it cannot take effect now."""
        ready, leased, v = self.ready, self.leased, self.vals[i]
        if self.kinds[i]:
            at = next((p for p, c in enumerate(ready) if self.frozen[c]), -1) if self.any_frozen else -1
            if at < 0:
                return [(ready + v, leased)]
            return [(ready[: at + 1] + tuple(sorted(ready[at + 1 :] + v)), leased)]
        if not self.known[i]:
            return self._take_unknown(i)
        if self.leasing[i]:
            taken = self._take_known(i)
            return [taken] if taken is not None else []
        k = len(v)
        m = self.maxm[i]
        if m == 0:
            ok = len(ready) == k and tuple(sorted(ready)) == self.drain_vals[i]
        else:
            ok = k <= m and ready[:k] == v and (len(ready) == k or k == m)
        return [(ready[k:], leased)] if ok else []

    def _canonical(self, leased: State) -> State:
        """Merged codes go last in the leased tuple (their order there does not matter: only a drain takes them)."""
        merged = self.merged
        if not any(merged[c] for c in leased):
            return leased
        return tuple(c for c in leased if not merged[c]) + tuple(c for c in leased if merged[c])

    def _take_known(self, i: int) -> tuple[State, State] | None:
        """A known dequeue that delivers a value that may be leased (else :meth:`_options` does it)."""
        if self.maxm[i] == 0:
            return self._drain_leased(i)
        v, m, k = self.vals[i], self.maxm[i], len(self.vals[i])
        back = [c for c, src in zip(v, self.source[i], strict=True) if src == 1]
        if k > m or any(c not in self.leased for c in back):
            return None
        front = tuple(c for c in self.leased if c in back) + self.ready
        if front[:k] != v or (len(front) != k and k != m):
            return None
        done = self.linearized | self.bits[i]
        new_leased = list(self.leased)
        for c, final in zip(v, self.settled[i], strict=True):
            if not self.again[c]:
                continue
            if self.delivered_by[c] & ~done:
                # delivered again later: this lease runs out, which it cannot if an ack settled it
                if final:
                    return None
                if c not in new_leased:
                    new_leased.append(c)
            elif c in new_leased:
                new_leased.remove(c)
        return front[k:], self._canonical(tuple(new_leased))

    def _drain_leased(self, i: int) -> tuple[State, State] | None:
        """The drain, when it reads a value that may be leased: everything ready, and values leased before whose
        lease ran out (several may share a merged code)."""
        pool = list(self.ready)
        spare = list(self.leased)
        for c, src in zip(self.vals[i], self.source[i], strict=True):
            if c in pool:
                pool.remove(c)
            elif src == 2 and c in spare:
                spare.remove(c)
            else:
                return None
        done = self.linearized | self.bits[i]
        if pool or any(self.again[c] and self.delivered_by[c] & ~done for c in self.vals[i]):
            return None  # (the drain ends its leases: nothing it took is delivered again)
        return (), tuple(spare)

    def _take_unknown(self, i: int) -> list[tuple[State, State]]:
        ready, leased, m = self.ready, self.leased, self.maxm[i]
        t = len(ready) if m == 0 else min(m, len(ready))
        sizes = [t]
        if self.several[i] and m != 0:
            sizes = sorted({min(m - s, len(ready)) for s in range(min(len(leased), m - 1) + 1)}, reverse=True)
        options: list[tuple[State, State]] = []
        for size in sizes:
            # an unknown dequeue that takes nothing is the same as one that never took effect: skip it
            if size and not any(self.pinned[c] for c in ready[:size]):
                options.append(
                    (ready[size:], self._canonical(leased + tuple(c for c in ready[:size] if self.again[c])))
                )
        return options

    def _only_candidate(self) -> int:
        """The call entry that is the only candidate at this node, or -1: any may be."""
        ready, entries = self.ready, self.entries
        if not ready or not self.clears_head[ready[0]]:
            return -1
        e = entries.first()
        while e != entries.tail and entries.is_call[e]:
            i = entries.entry_op[e]
            if not self.kinds[i] and not self.known[i] and self.linearized & self.gate[i] == self.gate[i]:
                return e
            e = entries.nxt[e]
        return -1


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
    patterns = _Patterns(ops)
    for v, deqs in patterns.deq_of.items():
        found = patterns.fresh_or_repeat(v, deqs)
        if found is not None:
            return found
    return patterns.fifo_order() or patterns.fifo_within_a_receive() or patterns.not_empty()


def _cex(kind: str, failing: QueueOp, involved: Sequence[QueueOp], message: str) -> Counterexample:
    assert failing.ret is not None
    described = [op.describe() for op in sorted(set(involved), key=lambda o: o.call)]
    return Counterexample(kind, failing.describe(), failing.ret, described, message)


class _Patterns:
    """The facts :func:`_find_pattern` reads, and one method per shape of violation."""

    def __init__(self, ops: Sequence[QueueOp]) -> None:
        self.ops = ops
        self.enq_of: dict[str, list[QueueOp]] = {}
        for op in ops:
            if op.kind == "enqueue":
                self.enq_of.setdefault(op.values[0], []).append(op)
        #: value -> the ok dequeues that returned it, in invoke order
        self.deq_of: dict[str, list[QueueOp]] = {}
        for op in ops:
            if op.kind == "dequeue" and op.known and op.ret is not None:
                for v in dict.fromkeys(op.values):
                    self.deq_of.setdefault(v, []).append(op)
        self.again = _redelivered(ops)
        self.unique_known = {
            v: es[0] for v, es in self.enq_of.items() if len(es) == 1 and es[0].known and es[0].ret is not None
        }
        unknown_deqs = [op for op in ops if op.kind == "dequeue" and not op.known]
        self.first_unknown = min(unknown_deqs, key=lambda o: o.call) if unknown_deqs else None
        #: (completion of E_a, a) for the unique values definitely enqueued, in completion order
        self.ahead = sorted((e.ret or 0, v) for v, e in self.unique_known.items())

    def fresh_or_repeat(self, v: str, deqs: list[QueueOp]) -> Counterexample | None:
        """A fresh or repeated value ``v`` (``deqs``: the ok dequeues that returned it)."""
        d = deqs[0]
        assert d.ret is not None
        if v not in self.enq_of:
            return _cex("fresh", d, [d], f"{d.describe()} returned {v!r}, which no enqueue on this queue attempted")
        if len(self.enq_of[v]) != 1:
            return None
        e = self.enq_of[v][0]
        late = [x for x in deqs if x.ret is not None and x.ret < e.call]
        if late:
            return _cex(
                "fresh",
                late[0],
                [late[0], e],
                f"{late[0].describe()} returned {v!r}, but {e.describe()} was invoked only after it completed",
            )
        dup = next((x for x in deqs if x.values.count(v) > 1), None)
        if dup is not None:
            return _cex(
                "repeat",
                dup,
                [e, dup],
                f"{v!r} was enqueued once ({e.describe()}) but {dup.describe()} returned it twice",
            )
        if v in self.again:
            return self._delivered_twice(v, e, deqs)
        if len(deqs) > 1:
            second = deqs[1]
            return _cex(
                "repeat",
                max(deqs[:2], key=lambda x: x.ret or 0),
                [e, deqs[0], second],
                f"{v!r} was enqueued once ({e.describe()}) but returned twice: by {deqs[0].describe()} and by "
                f"{second.describe()}",
            )
        return None

    def _delivered_twice(self, v: str, e: QueueOp, deqs: list[QueueOp]) -> Counterexample | None:
        twice = _delivered_twice(v, deqs)
        if twice is None:
            return None
        d1, d2, why = twice
        return _cex(
            "repeat",
            max(d1, d2, key=lambda x: x.ret or 0),
            [e, d1, d2],
            f"{v!r} was enqueued once ({e.describe()}) and delivered by {d1.describe()} and by {d2.describe()}: {why}",
        )

    def gone(self, v: str) -> tuple[float, QueueOp | None]:
        """``gone(v)``, and the dequeue that may have taken ``v`` then (None: never)."""
        deq_of, first_unknown = self.deq_of, self.first_unknown
        if v in deq_of and (v not in self.again or first_unknown is None or deq_of[v][0].call < first_unknown.call):
            return float(deq_of[v][0].call), deq_of[v][0]
        return (float(first_unknown.call), first_unknown) if first_unknown else (float("inf"), None)

    def why_gone(self, v: str, by: QueueOp | None) -> str:
        if by is not None and by.known:
            return f"the dequeue that returned it, {by.describe()}, was invoked later"
        if by is not None:
            returned = (
                f"the first dequeue that returned it, {self.deq_of[v][0].describe()}, and "
                if v in self.deq_of
                else "no ok dequeue returned it, and "
            )
            return f"{returned}the first unknown dequeue, {by.describe()}, were invoked later"
        return "no dequeue returned it or could have taken it"

    def fifo_order(self) -> Counterexample | None:
        """``a`` was ahead of ``b``, yet ``b`` left before ``a`` could have."""
        enq_of, ahead = self.enq_of, self.ahead
        behind = sorted((enq_of[v][0].call, v) for v in self.deq_of if len(enq_of.get(v, ())) == 1)
        best: tuple[float, str] | None = None
        pos = 0
        for b_call, b in behind:
            while pos < len(ahead) and ahead[pos][0] < b_call:
                a = ahead[pos][1]
                g, _ = self.gone(a)
                if best is None or g > best[0]:
                    best = (g, a)
                pos += 1
            d_b = self.deq_of[b][0]
            if best is not None and d_b.ret is not None and best[0] > d_b.ret:
                a = best[1]
                _, by = self.gone(a)
                e_a, e_b = self.unique_known[a], enq_of[b][0]
                return _cex(
                    "fifo-order",
                    d_b,
                    [e_a, e_b, d_b, *([by] if by else [])],
                    f"{e_a.describe()} completed before {e_b.describe()} was invoked, so {a!r} was ahead of {b!r}; "
                    f"but {d_b.describe()} returned {b!r} before {a!r} could have left the queue: "
                    f"{self.why_gone(a, by)}",
                )
        return None

    def fifo_within_a_receive(self) -> Counterexample | None:
        """One receive returned ``x`` before ``y``, though ``y`` was enqueued first."""
        for d in self.ops:
            if d.kind != "dequeue" or not d.known or d.ret is None or d.max_messages == 0:
                continue  # (a drain's result is not in FIFO order)
            for i, x in enumerate(d.values):
                for y in d.values[i + 1 :]:
                    e_y, e_x = self.unique_known.get(y), self.enq_of.get(x, [None])[0]
                    if e_y is not None and e_x is not None and e_y.ret is not None and e_y.ret < e_x.call:
                        return _cex(
                            "fifo-order",
                            d,
                            [e_y, e_x, d],
                            f"{e_y.describe()} completed before {e_x.describe()} was invoked, so {y!r} was ahead "
                            f"of {x!r}; but {d.describe()} returned {x!r} first",
                        )
        return None

    def not_empty(self) -> Counterexample | None:
        """A dequeue that saw the queue hold only what it returned, while some value was there throughout."""
        prefix_max: list[tuple[float, str]] = []
        for _, v in self.ahead:
            g, _ = self.gone(v)
            prefix_max.append(max(prefix_max[-1], (g, v)) if prefix_max else (g, v))
        rets = [r for r, _ in self.ahead]
        for d in self.ops:
            if d.kind != "dequeue" or not d.known or d.ret is None:
                continue
            if d.max_messages != 0 and len(d.values) >= d.max_messages:
                continue
            n = bisect.bisect_left(rets, d.call)
            if n and prefix_max[n - 1][0] > d.ret:
                v = prefix_max[n - 1][1]
                _, by = self.gone(v)
                e_v = self.unique_known[v]
                took = "everything" if d.max_messages == 0 else f"fewer than {d.max_messages} values"
                return _cex(
                    "not-empty",
                    d,
                    [e_v, d, *([by] if by else [])],
                    f"{d.describe()} took {took}, so the queue held only {list(d.values)!r}; but {v!r} was in it "
                    f"throughout: {e_v.describe()} completed before the dequeue was invoked, and "
                    f"{self.why_gone(v, by)}",
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
    cex, more_steps = _explain(ops, max_steps)
    return LinearResult(False, queue, len(ops), unknown, steps + more_steps, cex.message, counterexample=cex)


def _shortest_failing_prefix(ops: Sequence[QueueOp], max_steps: int) -> tuple[int, bool, int]:
    """A binary search over the completions of ops that are not linearizable for the first that makes the prefix
    fail: that completion event, whether the search finished within ``max_steps`` (else it is the shortest failing
    prefix found so far), and the steps it took."""
    steps = 0
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
    return returns[hi], shortest, steps


def _explain(ops: Sequence[QueueOp], max_steps: int) -> tuple[Counterexample, int]:
    """The counterexample of ops that are not linearizable (the shortest failing prefix), and the steps it took.
    The explanation gets another max_steps in all; when they run out, the shortest failing prefix found so far is
    reported."""
    cut, shortest, steps = _shortest_failing_prefix(ops, max_steps)
    budget = max_steps - steps
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
    return cex, steps


def check_queue_linearizable(
    history: Sequence[Event] | Sequence[Operation],
    queue: str,
    *,
    include_drain: bool = False,
    max_steps: int = DEFAULT_MAX_STEPS,
) -> LinearResult:
    """Checks one queue of a history (see chaos/DESIGN.md for what the model covers)."""
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
