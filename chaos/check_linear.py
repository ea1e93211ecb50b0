"""Linearizability of a FIFO queue: a Wing & Gong search with Lowe's memoization (as in Porcupine and Knossos).

**The model.** One queue, a sequence of values (message bodies), initially empty. Two operations:

- ``enqueue(v) -> ok``: appends ``v``.
- ``dequeue(m) -> [v1..vk]``: removes the first ``k`` values, which must be ``v1..vk`` in order, where
  ``k = min(m, length)``: it takes ``m`` values, or all of them if fewer are ready. ``k = 0`` is "empty".

**What in a history is an operation of the model.** For the chosen queue:

- an ``enqueue`` is ``enqueue(body)``;
- a ``receive`` with ``max_messages = m`` is ``dequeue(m)`` returning the bodies of the messages it leased, in the
  order given. The receive is the point where the messages leave the ready set; the ack that follows (normally by
  the same client at once) settles the delivery and changes nothing another consumer can observe, *as long as no
  lease runs out during the test*. So the logical "receive then ack" dequeue takes effect at the receive.
  The workload must use a visibility timeout longer than the test and no delays.
- with ``include_drain``, an ok ``drain`` is ``dequeue(everything)`` returning what it read (after every other op).
  Then every message an ok receive returned must have been acked: one whose lease ran out comes back in the
  drain and counts as dequeued twice. (A message an unknown receive leased and the drain read is fine.)
- acks, ``create-queue`` and other reads are ignored. ``nack``, ``extend``, an enqueue with ``delay_s``, an ack
  outcome ``stale`` or a delivery with ``delivery_count > 1`` mean a message came back or was hidden: the history
  is outside the model, and the answer is ``"unknown"`` with the reason.

**Outcomes.** ``ok`` operations take effect once between their invoke and completion. ``fail`` operations did not
happen and are dropped. ``info`` operations (and invokes with no completion) are pending until the end of the
history (Knossos semantics): they may take effect at any point after their invoke, or never. An unknown dequeue's
result is unknown: if it takes effect, it removes whatever is at the head.

Order is the events' ``index`` (real-time order), not their ``time``. Linearizability is local (Herlihy & Wing):
a history is linearizable iff each queue's sub-history is, so :func:`check_linearizable` checks queues one by
one.

**Idempotent retries.** Enqueue requests with the same idempotency key and body are one logical enqueue (the
server appends the message once and answers the retries ``duplicate``): it takes effect between the earliest invoke
of a request that did not fail and the first ok answer, or is unknown if none was ok. Bodies should be unique per
logical message (as for :mod:`chaos.check_queue`); repeated bodies are allowed but check slower and get no pruning.

**Patterns first.** Four shapes of violation are looked for directly, in O(n log n) (:func:`_find_pattern`):
*fresh* (a value dequeued that was never enqueued, or only after), *repeat* (dequeued twice), *fifo-order* (``a``
enqueued before ``b`` was invoked, yet ``b`` dequeued before ``a`` could have left) and *not-empty* (a dequeue
that got fewer than it asked for while a value was certainly queued). Each alone proves the history is not
linearizable, and the counterexample is just the 2-4 operations involved.

**The search** (Lowe's refinement of Wing & Gong, as in Porcupine): walk a doubly linked list of call and return
entries; linearize a call whose model step succeeds and whose (set of linearized ops, model state) has not been
seen, lift it out of the list and start again from the head; at a return entry of an op not yet linearized,
backtrack. It succeeds when every ``ok`` op is linearized (unknown ops may stay pending). Each loop iteration is a
step; past ``max_steps`` the answer is ``"unknown"``. Exact prunings keep it fast on real histories (each is
argued where it is coded, and the tests compare the checker with an exhaustive search on thousands of small
random histories): values no ok dequeue returned are indistinguishable in the state; a value returned by an ok
dequeue cannot be taken by an unknown one; the enqueue order of values is fixed by their dequeue order where that
is known; interchangeable unknown ops go in invoke order; unknown enqueues of values returned later are ok ops
ending at that return; unknown enqueues of values never returned are dropped when unknown dequeues take one
message each. The search tries ok ops first, then unknown ones, then enqueues of never-returned values.

**Performance** (measured on simulated histories of 200 ops): with ``max_messages = 1`` and up to 8 concurrent
clients, including 10-30 % unknown outcomes, a few thousand steps (milliseconds). Unknown receives of several
messages at once, or many more concurrent clients, can cost far more and may end "unknown".

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

    def describe(self) -> str:
        if self.label is not None:
            return self.label
        span = f"[{self.call}..{self.ret if self.known else '?'}]"
        if self.kind == "enqueue":
            result = "ok" if self.known else "?"
            tries = f" ({self.attempts} attempts)" if self.attempts > 1 else ""
            return f"process {self.process} enqueue({self.values[0]!r}){tries} -> {result} {span}"
        m = "all" if self.max_messages == 0 else str(self.max_messages)
        result = repr(list(self.values)) if self.known else "?"
        return f"process {self.process} dequeue({m}) -> {result} {span}"


@dataclass(frozen=True)
class Counterexample:
    #: "fresh", "repeat", "fifo-order", "not-empty" (a pattern, see :func:`_find_pattern`) or "search"
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


def queue_ops(
    history: Sequence[Event] | Sequence[Operation], queue: str, *, include_drain: bool = False
) -> tuple[list[QueueOp], list[str]]:
    """The queue's operations as model ops (in invoke order), and the reasons the history is outside the model.

    Enqueue requests with the same idempotency key (and body) are one logical enqueue: the message was appended by
    exactly one of them (the others answered ``duplicate``), so it took effect after the earliest invoke of a
    request that did not fail, and no later than the first ok answer; with no ok answer its outcome is unknown.
    """
    out: list[QueueOp] = []
    keyed: dict[tuple[str, str], list[Operation]] = {}
    outside: list[str] = []
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
        elif op.f == "receive":
            got = deliveries(op)
            outside.extend(
                f"{op.describe()} got {d.message_id} with delivery_count {d.delivery_count} (a redelivery)"
                for d in got
                if d.delivery_count is not None and d.delivery_count > 1
            )
            values = tuple(d.body for d in got)
            out.append(QueueOp(0, op.process, "dequeue", values, receive_max_messages(op), known, op.start, ret))
        elif op.f == "drain" and include_drain and known:
            values = tuple(d.body for d in deliveries(op))
            out.append(QueueOp(0, op.process, "dequeue", values, 0, True, op.start, ret))
        elif op.f in ("nack", "extend"):
            outside.append(f"{op.describe()} is outside the model")
        elif op.f == "ack":
            outside.extend(
                f"{op.describe()}: receipt {r} answered stale (a lease ran out)"
                for r, outcome in settle_outcomes(op)
                if outcome == "stale"
            )
    for (_, body), attempts in keyed.items():
        oks = [a for a in attempts if a.ok and a.end is not None]
        first_ok = min(oks, key=lambda a: a.end or 0) if oks else None
        process = first_ok.process if first_ok else attempts[0].process
        call = min(a.start for a in attempts)
        ret = first_ok.end if first_ok else None
        out.append(QueueOp(0, process, "enqueue", (body,), 1, first_ok is not None, call, ret, len(attempts)))
    out.sort(key=lambda o: o.call)
    return [replace(op, id=i) for i, op in enumerate(out)], outside


def _normalize(ops: Sequence[QueueOp]) -> list[QueueOp]:
    """Two exact simplifications of unknown enqueues, which otherwise make the search explode.

    - An unknown enqueue of a value enqueued by no other op, which an ok dequeue returned, did take effect, before
      that dequeue: it becomes a known op whose interval ends at that dequeue's completion.
    - An unknown enqueue of a value no ok dequeue returned is dropped when every unknown dequeue takes one message:
      given a linearization in which it takes effect, removing it (and the unknown dequeue that took it, if any)
      leaves a linearization: it never was within an ok dequeue's result, so each ok dequeue it was queued behind
      took all it asked for, with or without it.
    """
    enqueued = Counter(op.values[0] for op in ops if op.kind == "enqueue")
    seen_by: dict[str, int] = {}
    for op in ops:
        if op.kind == "dequeue" and op.known and op.ret is not None:
            for v in op.values:
                seen_by[v] = min(seen_by.get(v, op.ret), op.ret)
    single_takes = all(op.max_messages == 1 for op in ops if op.kind == "dequeue" and not op.known)
    out: list[QueueOp] = []
    for op in ops:
        if op.kind == "enqueue" and not op.known:
            v = op.values[0]
            if v in seen_by and enqueued[v] == 1:
                label = f"{op.describe()}, returned by a dequeue that completed at {seen_by[v]}"
                out.append(replace(op, id=len(out), known=True, ret=seen_by[v], label=label))
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
    - FIFO: for values ``a`` and ``b`` each enqueued by one op and returned by one ok dequeue, if ``a`` left the
      queue first (its dequeue completed before ``b``'s was invoked, or one dequeue returned ``a`` before ``b``),
      then ``a`` was enqueued first. Without this the search guesses an order for concurrent enqueues and may
      only find out many operations later, after trying every combination of the guesses in between.
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
    for i, op in enumerate(ops):
        if op.kind == "enqueue":
            enq_of.setdefault(op.values[0], []).append(i)
        elif op.known:
            for pos, v in enumerate(op.values):
                deq_of.setdefault(v, []).append((i, pos))
    unique = [(enq_of[v][0], deq_of[v][0]) for v in enq_of if len(enq_of[v]) == 1 and len(deq_of.get(v, ())) == 1]
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


def _search(ops: Sequence[QueueOp], max_steps: int, *, prune: bool = True) -> _Outcome:
    """The search. ``prune=False`` turns off the gates, the merging of unobserved values and the pinning, for a
    plain partial linearization to show in a counterexample."""
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
    codes: dict[str, int] = {}
    names = [UNOBSERVED]
    for op in ops:
        if (op.kind == "dequeue" and op.known) or not prune:
            for value in op.values:
                if value not in codes:
                    codes[value] = len(names)
                    names.append(value)
    vals = [tuple(codes.get(value, 0) for value in op.values) for op in ops]
    # A value enqueued once and returned by one ok dequeue leaves the queue through that dequeue only: an unknown
    # dequeue that would take it cannot be part of a linearization.
    enqueues = Counter(op.values[0] for op in ops if op.kind == "enqueue")
    returns = Counter(value for op in ops if op.kind == "dequeue" and op.known for value in op.values)
    pinned = [False] * len(names)
    for value, c in codes.items():
        pinned[c] = prune and enqueues[value] == 1 and returns[value] == 1
    maxm = [op.max_messages for op in ops]
    known = [op.known for op in ops]
    bits = [1 << i for i in range(n)]

    remaining = sum(known)
    state: tuple[int, ...] = ()
    linearized = 0
    # (lifted call entry, state before it, pass it was tried in)
    stack: list[tuple[int, tuple[int, ...], int]] = []
    cache: set[tuple[int, tuple[int, ...]]] = set()
    best: list[int] = []
    best_state: tuple[int, ...] = ()
    steps = 0
    entry = nxt[head]
    # Each node scans the candidates (the calls before the first return entry) in three passes: ok ops, then unknown
    # ones, then enqueues of values no dequeue returned (best placed late: ahead of others, they would have to be
    # taken by an unknown dequeue). The order changes only how soon a valid history is explained.
    phase_of = [0 if known[i] else 1 for i in range(n)]
    for i in range(n):
        if kinds[i] and vals[i][0] == 0:
            phase_of[i] = 2
    phase = 0
    while remaining:
        steps += 1
        if steps > max_steps:
            return _Outcome("unknown", steps, best, [names[c] for c in best_state])
        if is_call[entry]:
            i = entry_op[entry]
            if phase_of[i] != phase or linearized & gate[i] != gate[i]:
                entry = nxt[entry]
                continue
            v = vals[i]
            new_state: tuple[int, ...] | None
            if kinds[i]:
                new_state = state + v
            elif known[i]:
                k = len(v)
                m = maxm[i]
                ok = state[:k] == v and (m == 0 or k <= m) and (len(state) == k or (m != 0 and k == m))
                new_state = state[k:] if ok else None
            else:
                # an unknown dequeue that takes nothing is the same as one that never took effect: skip it
                m = maxm[i]
                t = len(state) if m == 0 else min(m, len(state))
                new_state = state[t:] if t and not any(pinned[c] for c in state[:t]) else None
            if new_state is not None:
                new_lin = linearized | bits[i]
                key = (new_lin, new_state)
                if key not in cache:
                    cache.add(key)
                    stack.append((entry, state, phase))
                    state = new_state
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
                        best = [entry_op[e] for e, _, _ in stack]
                        best_state = state
                    entry = nxt[head]
                    phase = 0
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
            entry, state, phase = stack.pop()
            i = entry_op[entry]
            linearized &= ~bits[i]
            if known[i]:
                remaining += 1
            r = match[entry]
            nxt[prv[r]] = r
            prv[nxt[r]] = r
            nxt[prv[entry]] = entry
            prv[nxt[entry]] = entry
            entry = nxt[entry]
    return _Outcome("ok", steps, [entry_op[e] for e, _, _ in stack], [names[c] for c in state])


def _prefix(ops: Sequence[QueueOp], cut: int) -> list[QueueOp]:
    """The ops invoked up to event ``cut``; those completing after it become pending (unknown)."""
    out: list[QueueOp] = []
    for op in ops:
        if op.call > cut:
            continue
        if op.known and op.ret is not None and op.ret > cut:
            values = op.values if op.kind == "enqueue" else ()
            out.append(replace(op, id=len(out), known=False, values=values, ret=None))
        else:
            out.append(replace(op, id=len(out)))
    return out


def _run(ops: Sequence[QueueOp], max_steps: int, *, prune: bool = True) -> tuple[_Outcome, list[QueueOp]]:
    """Searches the normalized ops; the outcome's order indexes the returned (normalized) list."""
    normal = _normalize(ops)
    return _search(normal, max_steps, prune=prune), normal


def _find_pattern(ops: Sequence[QueueOp]) -> Counterexample | None:
    """Known shapes of violation, each of which alone proves the history is not linearizable.

    They need no search, so a violation in a long history is found at once, and they name the few operations
    involved. "Unique" values are enqueued by exactly one op. For a value ``v`` definitely enqueued (``E_v`` ok),
    ``gone(v)`` is the earliest moment it may have left the queue: the invoke of the ok dequeue that returned it,
    else the earliest invoke of an unknown dequeue (never, if there is none).

    - fresh: an ok dequeue returned a value never enqueued, or (unique) enqueued only after the dequeue completed.
    - repeat: a unique value returned twice by ok dequeues.
    - fifo-order: ``E_a`` completed before ``E_b`` was invoked (so ``a`` was ahead of ``b``), and the ok dequeue of
      ``b`` completed before ``gone(a)``; or one dequeue returned ``b`` before ``a``.
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
            for v in op.values:
                deq_of.setdefault(v, []).append(op)

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
        if len(deqs) > 1 or deqs[0].values.count(v) > 1:
            second = deqs[1] if len(deqs) > 1 else deqs[0]
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
        if v in deq_of:
            return float(deq_of[v][0].call), deq_of[v][0]
        return (float(first_unknown.call), first_unknown) if first_unknown else (float("inf"), None)

    def why_gone(v: str, by: QueueOp | None) -> str:
        if v in deq_of:
            return f"the dequeue that returned it, {by.describe() if by else '?'}, was invoked later"
        if by is not None:
            return f"no ok dequeue returned it, and the first unknown dequeue, {by.describe()}, was invoked later"
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
        if d.kind != "dequeue" or not d.known or d.ret is None:
            continue
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
    ops, outside = queue_ops(history, queue, include_drain=include_drain)
    if outside:
        reason = "history outside the model: " + "; ".join(outside[:5]) + (" ..." if len(outside) > 5 else "")
        return LinearResult("unknown", queue, len(ops), sum(not op.known for op in ops), 0, reason)
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
