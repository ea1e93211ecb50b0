"""Linearizability of a FIFO queue: classic violations found, concurrency and unknown outcomes accepted.

Property tests: histories simulated from a real queue with random linearization points are always linearizable;
permuting the results of a sequential history is always caught; on small random histories the search agrees with
a plain exhaustive search.
"""

from __future__ import annotations

import random
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chaos.check_linear import (
    LinearResult,
    QueueOp,
    check_fifo_linearizable,
    check_linearizable,
    check_queue_linearizable,
    merge_validity,
    queue_ops,
)
from chaos.history import Event, HistoryWriter, Json
from tests.unit.chaos_checks import ack, drain, enq, enq_ok, enqueue, msg, receive, writer

SETTINGS = settings(derandomize=True, database=None, deadline=None, max_examples=150)


# ---------------------------------------------------------------------------------------------------------------
# Classic cases on hand-made histories


def test_an_empty_history_and_a_sequential_one_are_linearizable() -> None:
    assert check_queue_linearizable([], "q").valid is True
    w = writer()
    enqueue(w, 1, "a")
    enqueue(w, 1, "b")
    receive(w, 2, "a")
    receive(w, 2, "b")
    receive(w, 2)
    r = check_queue_linearizable(w.events, "q")
    assert r.valid is True and r.op_count == 5 and len(r.linearization) == 5
    assert r.linearization[0].startswith("process 1 enqueue('a')")


def _search_only(w: HistoryWriter, queue: str = "q") -> LinearResult:
    ops, outside = queue_ops(w.events, queue)
    assert not outside
    return check_fifo_linearizable(ops, use_patterns=False)


def test_dequeue_of_a_value_enqueued_only_after_the_dequeue_completed() -> None:
    w = writer()
    receive(w, 2, "a")
    done = enqueue(w, 1, "a")
    r = check_queue_linearizable(w.events, "q")
    assert r.valid is False and r.counterexample is not None
    assert r.counterexample.kind == "fresh" and "invoked only after it completed" in r.reason
    assert len(r.counterexample.operations) == 2
    s = _search_only(w)
    assert s.valid is False and s.counterexample is not None
    assert s.counterexample.kind == "search"
    assert s.counterexample.failing_index == 1  # the receive's completion
    assert "dequeue(1) -> ['a']" in s.counterexample.failing_op
    assert s.counterexample.shortest_prefix and done.index > 1


def test_two_dequeues_returning_the_same_value() -> None:
    w = writer()
    enqueue(w, 1, "a")
    receive(w, 2, "a")
    receive(w, 3, "a")
    r = check_queue_linearizable(w.events, "q")
    assert r.valid is False and r.counterexample is not None
    assert r.counterexample.kind == "repeat" and r.counterexample.failing_op.startswith("process 3 dequeue")
    s = _search_only(w)
    assert s.valid is False and s.counterexample is not None
    assert s.counterexample.failing_op.startswith("process 3 dequeue")
    assert s.counterexample.queue_after_partial == []


def test_fifo_violation_is_caught_with_the_queue_it_should_have_seen() -> None:
    w = writer()
    enqueue(w, 1, "a")
    enqueue(w, 1, "b")  # invoked after a was acknowledged
    receive(w, 2, "b")
    receive(w, 2, "a")
    r = check_queue_linearizable(w.events, "q")
    assert r.valid is False and r.counterexample is not None
    assert r.counterexample.kind == "fifo-order" and "so 'a' was ahead of 'b'" in r.reason
    assert r.counterexample.failing_index == 5 and len(r.counterexample.operations) == 4
    s = _search_only(w)
    assert s.valid is False and s.counterexample is not None
    cex = s.counterexample
    assert cex.failing_index == 5 and cex.shortest_prefix
    assert cex.queue_after_partial == ["a", "b"] and len(cex.longest_partial) == 2
    assert len(cex.operations) == 3
    assert "explains process 2 dequeue(1) -> ['b']" in cex.message


def test_fifo_violation_against_a_value_nobody_dequeued() -> None:
    w = writer()
    enqueue(w, 1, "a")
    enqueue(w, 1, "b")
    receive(w, 2, "b")  # a is still in the queue, and nothing could have taken it
    r = check_queue_linearizable(w.events, "q")
    assert r.valid is False and r.counterexample is not None and r.counterexample.kind == "fifo-order"
    assert "no dequeue returned it or could have taken it" in r.reason
    assert _search_only(w).valid is False


def test_an_empty_dequeue_while_a_value_is_definitely_queued() -> None:
    w = writer()
    enqueue(w, 1, "a")
    receive(w, 2)
    r = check_queue_linearizable(w.events, "q")
    assert r.valid is False and r.counterexample is not None and r.counterexample.kind == "not-empty"
    assert _search_only(w).valid is False


def test_a_dequeued_value_whose_enqueue_failed_is_not_linearizable() -> None:
    w = writer()
    w.fail(w.invoke(1, "enqueue", "q", enq("a")), "503 not_leader")
    receive(w, 2, "a")
    r = check_queue_linearizable(w.events, "q")
    assert r.valid is False and "no enqueue on this queue attempted" in r.reason
    assert _search_only(w).valid is False


def test_concurrent_enqueues_may_come_out_in_either_order() -> None:
    for first, second in (("a", "b"), ("b", "a")):
        w = writer()
        ea = w.invoke(1, "enqueue", "q", enq("a"))
        eb = w.invoke(2, "enqueue", "q", enq("b"))
        w.ok(eb, enq_ok("b", "id-b"))
        w.ok(ea, enq_ok("a", "id-a"))
        receive(w, 3, first)
        receive(w, 3, second)
        assert check_queue_linearizable(w.events, "q").valid is True


def test_a_dequeue_may_return_a_value_whose_enqueue_overlaps_it() -> None:
    w = writer()
    r = w.invoke(2, "receive", "q", {"max_messages": 1})
    e = w.invoke(1, "enqueue", "q", enq("a"))
    w.ok(r, [msg("a")])  # the dequeue completes before the enqueue is acknowledged
    w.ok(e, enq_ok("a", "id-a"))
    assert check_queue_linearizable(w.events, "q").valid is True


def test_an_overlapping_dequeue_may_also_see_the_queue_empty() -> None:
    w = writer()
    r = w.invoke(2, "receive", "q", {"max_messages": 1})
    enqueue(w, 1, "a")
    w.ok(r, [])
    receive(w, 2, "a")
    assert check_queue_linearizable(w.events, "q").valid is True


def test_an_unknown_enqueue_that_appears_later_is_accepted() -> None:
    w = writer()
    w.info(w.invoke(1, "enqueue", "q", enq("a", "k")), "timeout")
    receive(w, 2, "a")
    assert check_queue_linearizable(w.events, "q").valid is True


def test_an_unknown_enqueue_that_never_appears_is_accepted() -> None:
    w = writer()
    w.info(w.invoke(1, "enqueue", "q", enq("a")), "503 outcome_unknown")
    receive(w, 2)
    enqueue(w, 1, "b")
    receive(w, 2, "b")
    receive(w, 2)
    r = check_queue_linearizable(w.events, "q")
    assert r.valid is True and r.unknown_op_count == 1


def test_an_unknown_enqueue_may_take_effect_after_its_client_gave_up() -> None:
    w = writer()
    w.info(w.invoke(1, "enqueue", "q", enq("a")), "timeout")
    enqueue(w, 1, "b")
    receive(w, 2, "b")  # a was not in the queue yet ...
    receive(w, 2, "a")  # ... and arrived later
    assert check_queue_linearizable(w.events, "q").valid is True


def test_an_unknown_enqueue_cannot_take_effect_before_it_was_invoked() -> None:
    w = writer()
    receive(w, 2, "a")
    w.info(w.invoke(1, "enqueue", "q", enq("a")), "timeout")
    assert check_queue_linearizable(w.events, "q").valid is False


def test_an_unknown_receive_may_have_taken_the_head() -> None:
    for later in ((), ("a",)):
        w = writer()
        enqueue(w, 1, "a")
        w.info(w.invoke(2, "receive", "q", {"max_messages": 1}), "timeout")
        receive(w, 3, *later)
        assert check_queue_linearizable(w.events, "q").valid is True


def test_an_unknown_receive_cannot_explain_a_skipped_head() -> None:
    w = writer()
    enqueue(w, 1, "a")
    enqueue(w, 1, "b")
    receive(w, 3, "b")  # a was definitely at the head, and the unknown receive came later
    w.info(w.invoke(2, "receive", "q", {"max_messages": 1}), "timeout")
    assert check_queue_linearizable(w.events, "q").valid is False


@pytest.mark.parametrize(
    ("max_messages", "got", "valid"),
    [(2, ("a", "b"), True), (3, ("a", "b"), True), (2, ("a",), False), (2, ("b", "a"), False), (1, ("a", "b"), False)],
)
def test_a_batch_receive_takes_the_oldest_ready_messages(max_messages: int, got: tuple[str, ...], valid: bool) -> None:
    w = writer()
    enqueue(w, 1, "a")
    enqueue(w, 1, "b")
    receive(w, 2, *got, max_messages=max_messages)
    assert check_queue_linearizable(w.events, "q").valid is valid


def test_with_the_drain_a_missing_message_is_not_linearizable() -> None:
    w = writer()
    enqueue(w, 1, "a")
    enqueue(w, 1, "b")
    ack(w, 2, receive(w, 2, "a"))
    drain(w)
    assert check_queue_linearizable(w.events, "q").valid is True
    assert check_queue_linearizable(w.events, "q", include_drain=True).valid is False
    w2 = writer()
    enqueue(w2, 1, "a")
    enqueue(w2, 1, "b")
    receive(w2, 2, "a")
    drain(w2, msg("b"))
    assert check_queue_linearizable(w2.events, "q", include_drain=True).valid is True


@pytest.mark.parametrize("kind", ["stale", "nack", "redelivery", "delay"])
def test_histories_outside_the_model_answer_unknown(kind: str) -> None:
    w = writer()
    if kind == "delay":
        w.ok(w.invoke(1, "enqueue", "q", {"body": "a", "key": None, "delay_s": 5}), enq_ok("a", "id-a"))
    else:
        enqueue(w, 1, "a")
    receipts = receive(w, 2, "a")
    if kind == "stale":
        ack(w, 2, receipts, ["stale"])
    elif kind == "nack":
        named: list[Json] = list(receipts)
        w.ok(w.invoke(2, "nack", "q", {"receipts": named}), {"receipts": named, "outcomes": ["nacked"]})
    elif kind == "redelivery":
        w.ok(w.invoke(3, "receive", "q", None), [msg("a", count=2)])
    r = check_queue_linearizable(w.events, "q")
    assert r.valid == "unknown" and "outside the model" in r.reason


def test_a_spent_search_budget_answers_unknown() -> None:
    w = writer()
    for i in range(5):
        enqueue(w, 1, f"v{i}")
    r = check_queue_linearizable(w.events, "q", max_steps=3)
    assert r.valid == "unknown" and "budget" in r.reason


def test_queues_are_checked_separately() -> None:
    w = writer()
    enqueue(w, 1, "a", queue="q1")
    enqueue(w, 1, "a", queue="q2")
    enqueue(w, 1, "b", queue="q2")
    receive(w, 2, "a", queue="q1")
    receive(w, 2, "b", queue="q2")  # FIFO violation on q2 only
    r = check_linearizable(w.events)
    assert r.valid is False
    assert r.queues["q1"].valid is True and r.queues["q2"].valid is False
    assert check_linearizable(w.events, ["q1"]).valid is True


def test_merge_validity() -> None:
    assert merge_validity([]) is True
    assert merge_validity([True, "unknown"]) == "unknown"
    assert merge_validity([True, "unknown", False]) is False


def test_the_counterexample_is_the_shortest_failing_prefix_of_a_long_history() -> None:
    w = writer()
    for i in range(30):
        enqueue(w, 1, f"v{i}")
        receive(w, 2, f"v{i}")
    enqueue(w, 1, "x")
    enqueue(w, 1, "y")
    receive(w, 2, "y")
    bad = w.events[-1].index
    for i in range(30):  # more traffic after the violation
        enqueue(w, 1, f"w{i}")
    r = check_queue_linearizable(w.events, "q")
    assert r.valid is False and r.counterexample is not None
    assert r.counterexample.kind == "fifo-order" and r.counterexample.failing_index == bad
    s = _search_only(w)
    assert s.valid is False and s.counterexample is not None
    assert s.counterexample.failing_index == bad and s.counterexample.shortest_prefix
    assert s.counterexample.queue_after_partial == ["x", "y"]
    assert len(s.counterexample.operations) == 63


# ---------------------------------------------------------------------------------------------------------------
# Simulated concurrent histories


@dataclass
class _InFlight:
    invoke: Event
    kind: str
    body: str
    max_messages: int
    applied: bool = False
    result: tuple[str, ...] = ()


def simulate(
    seed: int,
    *,
    processes: int,
    ops: int,
    p_info: float = 0.0,
    p_fail: float = 0.0,
    max_messages: int = 1,
    queue: str = "q",
) -> HistoryWriter:
    """A history of clients on a real FIFO queue: each op takes effect at a random point inside its interval.

    Ops that end ``fail`` never take effect; ops that end ``info`` took effect already, or take effect later (at a
    random point, even after their client moved on), or never.
    """
    rng = random.Random(seed)
    w = writer()
    real: deque[str] = deque()
    flying: dict[int, _InFlight] = {}
    floating: list[_InFlight] = []  # info ops that may still take effect
    started = 0

    def apply(op: _InFlight) -> None:
        if op.kind == "enqueue":
            real.append(op.body)
        else:
            op.result = tuple(real.popleft() for _ in range(min(op.max_messages, len(real))))
        op.applied = True

    while started < ops or flying:
        if floating and rng.random() < 0.05:
            apply(floating.pop(rng.randrange(len(floating))))
            continue
        p = rng.randrange(processes)
        op = flying.get(p)
        if op is None:
            if started >= ops:
                continue
            started += 1
            if rng.random() < 0.5:
                body = f"v{started}"
                flying[p] = _InFlight(w.invoke(p, "enqueue", queue, enq(body)), "enqueue", body, 1)
            else:
                m = rng.randint(1, max_messages)
                flying[p] = _InFlight(w.invoke(p, "receive", queue, {"max_messages": m}), "receive", "", m)
        elif not op.applied and rng.random() < 0.6:
            x = rng.random()
            if x < p_fail:
                w.fail(op.invoke, "503 not_leader")
                del flying[p]
            elif x < p_fail + p_info:
                w.info(op.invoke, "timeout")
                if rng.random() < 0.5:
                    floating.append(op)
                del flying[p]
            else:
                apply(op)
        elif op.applied:
            if rng.random() < p_info:
                w.info(op.invoke, "timeout")
            elif op.kind == "enqueue":
                w.ok(op.invoke, enq_ok(op.body, f"id-{op.body}"))
            else:
                got: list[Json] = [msg(b) for b in op.result]
                w.ok(op.invoke, got)
            del flying[p]
    return w


def _respects(order: Sequence[QueueOp], ops: Sequence[QueueOp]) -> bool:
    """The order keeps real time (a known op that returned before another's call comes first) and the model."""
    pos = {op.call: n for n, op in enumerate(order)}
    for a in ops:
        for b in ops:
            if a.known and a.ret is not None and a.ret < b.call and b.call in pos and pos.get(a.call, -1) > pos[b.call]:
                return False
    return _model_ok(order)


def _model_ok(order: Sequence[QueueOp]) -> bool:
    q: list[str] = []
    for op in order:
        if op.kind == "enqueue":
            q.append(op.values[0])
            continue
        take = len(q) if op.max_messages == 0 else min(op.max_messages, len(q))
        if op.known and tuple(q[:take]) != op.values:
            return False
        del q[:take]
    return True


@SETTINGS
@given(st.integers(0, 2**32), st.integers(1, 4), st.integers(1, 40))
def test_random_sequential_histories_are_linearizable(seed: int, max_messages: int, n: int) -> None:
    w = simulate(seed, processes=1, ops=n, max_messages=max_messages)
    r = check_queue_linearizable(w.events, "q")
    assert r.valid is True


@SETTINGS
@given(st.integers(0, 2**32), st.integers(2, 6), st.integers(1, 40), st.sampled_from([0.0, 0.1, 0.3]))
def test_simulated_concurrent_histories_are_linearizable(seed: int, processes: int, n: int, p_info: float) -> None:
    w = simulate(seed, processes=processes, ops=n, p_info=p_info, p_fail=0.1, max_messages=2)
    ops, outside = queue_ops(w.events, "q")
    assert not outside
    r = check_fifo_linearizable(ops)
    assert r.valid is True, r.reason
    by_call = {op.call: op for op in ops}
    witness = [by_call[c] for c in r.witness_calls]
    assert {op.call for op in ops if op.known} <= {op.call for op in witness}
    assert _respects(witness, ops)


@SETTINGS
@given(st.integers(0, 2**32), st.integers(4, 40), st.randoms(use_true_random=False))
def test_permuting_the_results_of_a_sequential_history_is_caught(seed: int, n: int, rnd: random.Random) -> None:
    ops, _ = queue_ops(simulate(seed, processes=1, ops=n).events, "q")
    deqs = [i for i, op in enumerate(ops) if op.kind == "dequeue"]
    results = [ops[i].values for i in deqs]
    shuffled = results[:]
    rnd.shuffle(shuffled)
    if shuffled == results:
        return
    mutated = list(ops)
    for i, values in zip(deqs, shuffled, strict=True):
        mutated[i] = replace(ops[i], values=values)
    assert check_fifo_linearizable(mutated).valid is False


def test_the_search_is_fast_on_a_200_op_history_with_many_clients_and_timeouts() -> None:
    slowest = 0.0
    for seed in range(5):
        w = simulate(seed, processes=8, ops=200, p_info=0.1, p_fail=0.05, max_messages=1)
        t0 = time.perf_counter()
        r = check_queue_linearizable(w.events, "q")
        slowest = max(slowest, time.perf_counter() - t0)
        assert r.valid is True, r.reason
    assert slowest < 1.0, slowest


def test_a_late_violation_in_a_200_op_history_is_found_quickly() -> None:
    w = simulate(7, processes=8, ops=200, p_info=0.05, max_messages=1)
    enqueue(w, 1000, "late-a")
    enqueue(w, 1000, "late-b")
    receive(w, 1001, "late-b")
    receive(w, 1001, "late-a")
    t0 = time.perf_counter()
    r = check_queue_linearizable(w.events, "q")
    assert r.valid is False and r.counterexample is not None, r.reason
    assert r.counterexample.kind == "fifo-order" and "late-a" in r.reason
    assert time.perf_counter() - t0 < 1.0


# ---------------------------------------------------------------------------------------------------------------
# Against an exhaustive search on small random histories


def _exhaustive(ops: Sequence[QueueOp]) -> bool:
    def rec(remaining: frozenset[int], q: tuple[str, ...]) -> bool:
        if not any(ops[i].known for i in remaining):
            return True
        for i in remaining:
            op = ops[i]
            if any(ops[j].known and (ops[j].ret or 0) < op.call for j in remaining if j != i):
                continue
            if op.kind == "enqueue":
                nq: tuple[str, ...] | None = (*q, op.values[0])
            else:
                take = min(op.max_messages, len(q))
                nq = q[take:] if not op.known or q[:take] == op.values else None
            if nq is not None and rec(remaining - {i}, nq):
                return True
        return False

    return rec(frozenset(range(len(ops))), ())


@st.composite
def small_histories(draw: st.DrawFn) -> list[QueueOp]:
    n = draw(st.integers(1, 6))
    positions = draw(st.permutations(range(2 * n)))
    out: list[QueueOp] = []
    for i in range(n):
        call, ret = sorted(positions[2 * i : 2 * i + 2])
        known = draw(st.integers(0, 4)) > 0
        if draw(st.booleans()):
            out.append(
                QueueOp(i, i, "enqueue", (draw(st.sampled_from("abc")),), 1, known, call, ret if known else None)
            )
        else:
            m = draw(st.integers(1, 2))
            values = tuple(draw(st.lists(st.sampled_from("abc"), max_size=m))) if known else ()
            out.append(QueueOp(i, i, "dequeue", values, m, known, call, ret if known else None))
    return out


@st.composite
def small_unique_histories(draw: st.DrawFn) -> list[QueueOp]:
    """Each value enqueued once; dequeues return enqueued values (mostly), one at a time or two."""
    n = draw(st.integers(1, 7))
    positions = draw(st.permutations(range(2 * n)))
    kinds = [draw(st.booleans()) for _ in range(n)]
    values = [f"v{i}" for i in range(n) if kinds[i]]
    out: list[QueueOp] = []
    for i in range(n):
        call, ret = sorted(positions[2 * i : 2 * i + 2])
        known = draw(st.integers(0, 3)) > 0
        end = ret if known else None
        if kinds[i]:
            out.append(QueueOp(i, i, "enqueue", (f"v{i}",), 1, known, call, end))
        else:
            m = draw(st.sampled_from([1, 1, 1, 2]))
            got = tuple(draw(st.lists(st.sampled_from(values), max_size=m, unique=True))) if known and values else ()
            out.append(QueueOp(i, i, "dequeue", got, m, known, call, end))
    return out


@settings(derandomize=True, database=None, deadline=None, max_examples=500)
@given(small_histories())
def test_the_search_agrees_with_an_exhaustive_search(ops: list[QueueOp]) -> None:
    expected = _exhaustive(ops)
    assert check_fifo_linearizable(ops).valid is expected
    assert check_fifo_linearizable(ops, use_patterns=False).valid is expected


@settings(derandomize=True, database=None, deadline=None, max_examples=800)
@given(small_unique_histories())
def test_the_search_agrees_with_an_exhaustive_search_on_unique_values(ops: list[QueueOp]) -> None:
    expected = _exhaustive(ops)
    assert check_fifo_linearizable(ops).valid is expected
    assert check_fifo_linearizable(ops, use_patterns=False).valid is expected
