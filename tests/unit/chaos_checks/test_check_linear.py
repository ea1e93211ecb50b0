"""Linearizability of a FIFO queue: classic violations found, concurrency and unknown outcomes accepted.

Property tests: histories simulated from a real queue with random linearization points are always linearizable;
permuting the results of a sequential history is always caught; on small random histories the search agrees with
a plain exhaustive search.
"""

from __future__ import annotations

import functools
import random
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Literal

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


def _search_only(w: HistoryWriter, queue: str = "q", *, include_drain: bool = False) -> LinearResult:
    ops, outside = queue_ops(w.events, queue, include_drain=include_drain)
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


@pytest.mark.parametrize("kind", ["stale", "nack", "delay"])
def test_histories_outside_the_model_answer_unknown(kind: str) -> None:
    # stale: the first and only ack answered stale, so the lease ran out; without a drain nobody saw the message
    # again, and where it went is unknown
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
    r = check_queue_linearizable(w.events, "q")
    assert r.valid == "unknown" and "outside the model" in r.reason


# ---------------------------------------------------------------------------------------------------------------
# Leases that run out: acks retried after an unknown outcome, and redeliveries


def deliver(w: HistoryWriter, process: int, *items: tuple[str, int], max_messages: int = 1) -> list[str]:
    """An ok receive returning ``(body, delivery_count)`` pairs; returns their receipts."""
    inv = w.invoke(process, "receive", "q", {"max_messages": max_messages}, node="n1")
    got = [msg(body, count=count) for body, count in items]
    w.ok(inv, list(got))
    return [str(m["receipt"]) for m in got]


def unknown_ack(w: HistoryWriter, process: int, receipt: str) -> None:
    w.info(w.invoke(process, "ack", "q", {"receipts": [receipt]}), "timeout")


def unknown_receive(w: HistoryWriter, process: int, max_messages: int = 1) -> None:
    w.info(w.invoke(process, "receive", "q", {"max_messages": max_messages}), "503 outcome_unknown")


def test_an_ack_retried_after_an_unknown_outcome_may_answer_stale() -> None:
    # the first attempt timed out but did ack; the retry then finds the receipt no longer valid
    w = writer()
    enqueue(w, 1, "a")
    enqueue(w, 1, "b")
    receipts = receive(w, 2, "a")
    unknown_ack(w, 2, receipts[0])
    ack(w, 2, receipts, ["stale"])
    ack(w, 2, receive(w, 2, "b"))
    r = check_queue_linearizable(w.events, "q")
    assert r.valid is True, r.reason
    drain(w)
    r = check_queue_linearizable(w.events, "q", include_drain=True)
    assert r.valid is True, r.reason


def test_an_ack_retried_after_an_unknown_outcome_may_also_not_have_acked() -> None:
    # neither attempt acked (the lease ran out first): the message comes back, and the drain reads it again
    w = writer()
    enqueue(w, 1, "a")
    receipts = receive(w, 2, "a")
    unknown_ack(w, 2, receipts[0])
    ack(w, 2, receipts, ["stale"])
    drain(w, msg("a", count=2))
    r = check_queue_linearizable(w.events, "q", include_drain=True)
    assert r.valid is True, r.reason


@pytest.mark.parametrize(
    "other_attempt", ["none", "after the stale answer", "of another receipt", "failed", "also answered stale"]
)
def test_a_stale_ack_no_earlier_attempt_explains_means_the_message_must_come_back(other_attempt: str) -> None:
    w = writer()
    enqueue(w, 1, "a")
    enqueue(w, 1, "b")
    ra = receive(w, 2, "a")
    rb = receive(w, 3, "b")
    if other_attempt == "of another receipt":
        unknown_ack(w, 3, rb[0])
    if other_attempt == "failed":
        w.fail(w.invoke(2, "ack", "q", {"receipts": list[Json](ra)}), "503 not_leader")
    if other_attempt == "also answered stale":  # two concurrent attempts, neither explains the other
        named: list[Json] = list(ra)
        first = w.invoke(4, "ack", "q", {"receipts": named})
        second = w.invoke(2, "ack", "q", {"receipts": named})
        w.ok(first, {"receipts": named, "outcomes": ["stale"]})
        w.ok(second, {"receipts": named, "outcomes": ["stale"]})
    else:
        ack(w, 2, ra, ["stale"])
    if other_attempt == "after the stale answer":
        unknown_ack(w, 2, ra[0])
    ack(w, 3, rb)
    r = check_queue_linearizable(w.events, "q")
    assert r.valid == "unknown" and "answered stale with no earlier ack" in r.reason
    drain(w)  # the drain read everything left: 'a' is not there, and nobody received it again
    r = check_queue_linearizable(w.events, "q", include_drain=True)
    assert r.valid is False and r.counterexample is not None, r.reason
    assert r.counterexample.kind == "lost" and "'a'" in r.reason
    assert len(r.counterexample.operations) == 3


def test_a_stale_ack_with_the_message_delivered_again_is_a_lease_that_ran_out() -> None:
    w = writer()
    enqueue(w, 1, "a")
    ack(w, 2, receive(w, 2, "a"), ["stale"])
    drain(w, msg("a", count=2))
    assert check_queue_linearizable(w.events, "q", include_drain=True).valid is True
    w2 = writer()
    enqueue(w2, 1, "a")
    ack(w2, 2, receive(w2, 2, "a"), ["stale"])
    ack(w2, 3, deliver(w2, 3, ("a", 2)))
    assert check_queue_linearizable(w2.events, "q").valid is True


@pytest.mark.parametrize("again_in", ["receive", "drain"])
def test_a_message_acked_then_delivered_again_is_not_linearizable(again_in: str) -> None:
    w = writer()
    enqueue(w, 1, "a")
    ack(w, 2, receive(w, 2, "a"))
    if again_in == "receive":
        ack(w, 3, deliver(w, 3, ("a", 2)))
    else:
        drain(w, msg("a", count=2))
    r = check_queue_linearizable(w.events, "q", include_drain=True)
    assert r.valid is False and r.counterexample is not None
    assert r.counterexample.kind == "repeat" and "answered acked" in r.reason
    assert _search_only(w, include_drain=True).valid is False


def test_a_message_leased_by_an_unknown_receive_comes_back_in_the_drain() -> None:
    w = writer()
    enqueue(w, 1, "a")
    enqueue(w, 1, "b")
    unknown_receive(w, 3)  # it leased a, with a lease longer than the workload
    ack(w, 2, receive(w, 2, "b"))
    enqueue(w, 1, "c")
    ack(w, 2, receive(w, 2, "c"))
    drain(w, msg("a", count=2))
    r = check_queue_linearizable(w.events, "q", include_drain=True)
    assert r.valid is True, r.reason
    assert _search_only(w, include_drain=True).valid is True
    # the receive of b alone is explained the old way too: the unknown receive took a for good
    assert check_queue_linearizable(w.events, "q").valid is True


def test_the_drain_may_read_a_message_whose_lease_ran_out_last() -> None:
    # the drain is many receives: a's lease ran out while it read, so a comes after c
    w = writer()
    for body in "abc":
        enqueue(w, 1, body)
    unknown_receive(w, 3)
    ack(w, 2, receive(w, 2, "b"))
    drain(w, msg("c"), msg("a", count=2))
    assert check_queue_linearizable(w.events, "q", include_drain=True).valid is True
    w2 = writer()
    enqueue(w2, 1, "a")
    enqueue(w2, 1, "b")
    drain(w2, msg("b"), msg("a"))
    assert check_queue_linearizable(w2.events, "q", include_drain=True).valid is True


def test_a_message_whose_lease_ran_out_comes_back_at_its_old_place() -> None:
    cases: list[tuple[tuple[tuple[str, int], ...], bool]] = [
        ((("a", 2), ("c", 1)), True),
        ((("c", 1), ("a", 2)), False),
    ]
    for got, valid in cases:
        w = writer()
        for body in "abc":
            enqueue(w, 1, body)
        unknown_receive(w, 3)  # leased a
        ack(w, 2, receive(w, 2, "b"))
        ack(w, 2, deliver(w, 2, *got, max_messages=2))  # a is back, ahead of c
        r = check_queue_linearizable(w.events, "q")
        assert r.valid is valid, (got, r.reason)
        assert _search_only(w).valid is valid
    w = writer()
    for body in "abc":
        enqueue(w, 1, body)
    unknown_receive(w, 3)
    ack(w, 2, receive(w, 2, "b"))
    ack(w, 2, receive(w, 2, "c"))  # a may still be leased ...
    ack(w, 2, deliver(w, 2, ("a", 2)))  # ... and come back later
    assert check_queue_linearizable(w.events, "q").valid is True


@pytest.mark.parametrize("case", ["no unknown receive", "unknown receive too late", "first delivery", "never leased"])
def test_a_redelivery_nothing_could_have_leased_before_is_not_linearizable(case: str) -> None:
    w = writer()
    enqueue(w, 1, "a")
    enqueue(w, 1, "b")
    if case == "never leased":
        deliver(w, 2, ("a", 2))  # delivery 2, yet nothing took a before
        deliver(w, 2, ("b", 1))
    else:
        if case == "first delivery":
            unknown_receive(w, 3)
        ack(w, 2, receive(w, 2, "b"))  # b was behind a: a must have been leased before
        if case == "unknown receive too late":
            unknown_receive(w, 3)
        if case == "first delivery":
            deliver(w, 2, ("a", 1))  # delivery 1: nothing leased a before, so b could not go first
        else:
            drain(w, msg("a", count=2))
    r = check_queue_linearizable(w.events, "q", include_drain=True)
    assert r.valid is False, r.reason
    assert _search_only(w, include_drain=True).valid is False


def test_a_batch_unknown_receive_may_retake_a_message_that_came_back() -> None:
    # a leased by u1 (so b could go first), back, leased again with c by u2 (so d could go first), and back again
    def op(i: int, kind: Literal["enqueue", "dequeue"], values: tuple[str, ...], m: int, ret: int | None) -> QueueOp:
        counts = (3,) if values == ("a",) else ()
        return QueueOp(i, i, kind, values, m, ret is not None, 2 * i, ret, counts=counts)

    ops = [
        *(op(i, "enqueue", (body,), 1, 2 * i + 1) for i, body in enumerate("abcd")),
        op(4, "dequeue", (), 1, None),
        op(5, "dequeue", ("b",), 1, 11),
        op(6, "dequeue", (), 2, None),
        op(7, "dequeue", ("d",), 1, 15),
        op(8, "dequeue", ("a",), 1, 17),
    ]
    assert check_fifo_linearizable(ops).valid is True
    assert check_fifo_linearizable(ops, use_patterns=False).valid is True
    assert _exhaustive_leases(ops) is True


def test_deliveries_carry_their_counts_and_whether_an_ack_settled_them() -> None:
    w = writer()
    for body in "abc":
        enqueue(w, 1, body)
    ra = receive(w, 2, "a")
    unknown_ack(w, 2, ra[0])
    ack(w, 2, ra, ["stale"])
    ack(w, 2, receive(w, 2, "b"))
    receive(w, 2, "c")  # never acked
    drain(w, msg("c", count=2))
    ops, outside = queue_ops(w.events, "q", include_drain=True)
    assert not outside
    deqs = [op for op in ops if op.kind == "dequeue"]
    assert [op.values for op in deqs] == [("a",), ("b",), ("c",), ("c",)]
    assert [op.settled for op in deqs] == [(), (True,), (), ()]
    assert [op.counts for op in deqs] == [(), (), (), (2,)]
    assert deqs[3].lease_settled(0) and not deqs[2].lease_settled(0)
    assert "'c' (delivery 2)" in deqs[3].describe()
    assert check_queue_linearizable(w.events, "q", include_drain=True).valid is True


def test_a_redelivered_body_enqueued_twice_is_outside_the_model() -> None:
    w = writer()
    enqueue(w, 1, "a")
    enqueue(w, 1, "a")
    receive(w, 2, "a")
    deliver(w, 2, ("a", 2))
    r = check_queue_linearizable(w.events, "q")
    assert r.valid == "unknown" and "enqueued by 2 logical enqueues" in r.reason


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
    sim = _Simulation(seed, queue)
    while sim.started < ops or sim.flying:
        if sim.floating and sim.rng.random() < 0.05:
            sim.apply(sim.floating.pop(sim.rng.randrange(len(sim.floating))))
            continue
        p = sim.rng.randrange(processes)
        op = sim.flying.get(p)
        if op is None:
            if sim.started < ops:
                sim.start(p, max_messages)
        elif not op.applied and sim.rng.random() < 0.6:
            sim.end_unapplied(p, op, p_fail=p_fail, p_info=p_info)
        elif op.applied:
            sim.end_applied(p, op, p_info=p_info)
    return sim.w


class _Simulation:
    """The state of :func:`simulate`: the real queue, the ops in flight, the info ops that may still take effect."""

    def __init__(self, seed: int, queue: str) -> None:
        self.rng = random.Random(seed)
        self.w = writer()
        self.queue = queue
        self.real: deque[str] = deque()
        self.flying: dict[int, _InFlight] = {}
        self.floating: list[_InFlight] = []  # info ops that may still take effect
        self.started = 0

    def apply(self, op: _InFlight) -> None:
        if op.kind == "enqueue":
            self.real.append(op.body)
        else:
            op.result = tuple(self.real.popleft() for _ in range(min(op.max_messages, len(self.real))))
        op.applied = True

    def start(self, p: int, max_messages: int) -> None:
        """Process ``p`` invokes an enqueue or a receive."""
        self.started += 1
        if self.rng.random() < 0.5:
            body = f"v{self.started}"
            self.flying[p] = _InFlight(self.w.invoke(p, "enqueue", self.queue, enq(body)), "enqueue", body, 1)
        else:
            m = self.rng.randint(1, max_messages)
            inv = self.w.invoke(p, "receive", self.queue, {"max_messages": m})
            self.flying[p] = _InFlight(inv, "receive", "", m)

    def end_unapplied(self, p: int, op: _InFlight, *, p_fail: float, p_info: float) -> None:
        """An op not applied yet fails, ends info (and may still take effect), or takes effect."""
        x = self.rng.random()
        if x < p_fail:
            self.w.fail(op.invoke, "503 not_leader")
            del self.flying[p]
        elif x < p_fail + p_info:
            self.w.info(op.invoke, "timeout")
            if self.rng.random() < 0.5:
                self.floating.append(op)
            del self.flying[p]
        else:
            self.apply(op)

    def end_applied(self, p: int, op: _InFlight, *, p_info: float) -> None:
        """An op that took effect ends info or ok."""
        if self.rng.random() < p_info:
            self.w.info(op.invoke, "timeout")
        elif op.kind == "enqueue":
            self.w.ok(op.invoke, enq_ok(op.body, f"id-{op.body}"))
        else:
            got: list[Json] = [msg(b) for b in op.result]
            self.w.ok(op.invoke, got)
        del self.flying[p]


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


# ---------------------------------------------------------------------------------------------------------------
# Leases, against an exhaustive search that lets any lease run out at any moment


#: in the lease model: (enqueue sequence, value)
_Item = tuple[int, str]


def _exhaustive_leases(ops: Sequence[QueueOp]) -> bool:
    """The lease model by brute force, with values enqueued once: every take leases what it takes; any lease that
    no ack settled may run out at any moment (the message is ready again at its enqueue position); an unknown
    dequeue takes the head, whatever it is. A delivery with count 1 takes a message never leased before, a
    receive's with a higher count one leased before, a drain's with a higher count either."""

    @functools.cache
    def rec(
        remaining: frozenset[int], ready: tuple[_Item, ...], leased: frozenset[_Item], ever: frozenset[str], seq: int
    ) -> bool:
        if not any(ops[i].known for i in remaining):
            return True
        for item in leased:  # a lease runs out
            if rec(remaining, tuple(sorted((*ready, item))), leased - {item}, ever, seq):
                return True
        for i in remaining:
            op = ops[i]
            if any(ops[j].known and (ops[j].ret or 0) < op.call for j in remaining if j != i):
                continue
            rest = remaining - {i}
            if op.kind == "enqueue":
                if rec(rest, (*ready, (seq, op.values[0])), leased, ever, seq + 1):
                    return True
                continue
            m = op.max_messages
            if not op.known:
                t = len(ready) if m == 0 else min(m, len(ready))
                head = ready[:t]
                if rec(rest, ready[t:], leased | set(head), ever | {v for _, v in head}, seq):
                    return True
                continue
            taken = _lease_take(op, ready, ever)
            if taken is None:
                continue
            runs_out = {item for p, item in enumerate(taken) if not op.lease_settled(p)}
            left = tuple(x for x in ready if x not in taken)
            if rec(rest, left, leased | runs_out, ever | set(op.values), seq):
                return True
        return False

    return rec(frozenset(range(len(ops))), (), frozenset(), frozenset(), 0)


def _lease_take(op: QueueOp, ready: tuple[_Item, ...], ever: frozenset[str]) -> tuple[_Item, ...] | None:
    """What a known dequeue takes from ``ready`` in the lease model (``ever``: the values leased before), or None
    if it cannot take effect now."""
    m = op.max_messages
    k = len(op.values)
    if m == 0:
        if sorted(v for _, v in ready) != sorted(op.values):
            return None
        at = {v: item for item in ready for v in [item[1]]}
        taken = tuple(at[v] for v in op.values)
    else:
        if k > m or tuple(v for _, v in ready[:k]) != op.values or (len(ready) != k and k != m):
            return None
        taken = ready[:k]
    if any(
        (op.count(p) <= 1 and v in ever) or (op.count(p) > 1 and m != 0 and v not in ever)
        for p, v in enumerate(op.values)
    ):
        return None
    return taken


@st.composite
def small_lease_histories(draw: st.DrawFn) -> list[QueueOp]:
    """Values enqueued once; receives (of 1 to 3, some unknown) return them with delivery counts 1 to 3, some
    settled by an ack; sometimes a drain at the end."""
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
            continue
        m = draw(st.sampled_from([1, 1, 2] if known else [1, 1, 2, 3]))
        got = tuple(draw(st.lists(st.sampled_from(values), max_size=m, unique=True))) if known and values else ()
        counts = tuple(draw(st.sampled_from([1, 1, 2, 3])) for _ in got)
        settled = tuple(draw(st.integers(0, 4)) == 0 for _ in got)
        out.append(QueueOp(i, i, "dequeue", got, m, known, call, end, counts=counts, settled=settled))
    with_drain = draw(st.booleans())
    if values and with_drain:
        got = tuple(draw(st.lists(st.sampled_from(values), unique=True)))
        counts = tuple(draw(st.sampled_from([1, 2])) for _ in got)
        out.append(QueueOp(n, 99, "dequeue", got, 0, True, 2 * n, 2 * n + 1, counts=counts))
    return out


@settings(derandomize=True, database=None, deadline=None, max_examples=1500)
@given(small_lease_histories())
def test_the_search_agrees_with_an_exhaustive_search_of_leases(ops: list[QueueOp]) -> None:
    expected = _exhaustive_leases(ops)
    assert check_fifo_linearizable(ops).valid is expected
    assert check_fifo_linearizable(ops, use_patterns=False).valid is expected


@dataclass
class _Message:
    body: str
    seq: int
    state: Literal["ready", "leased", "deleted"] = "ready"
    count: int = 0


class _LeaseQueue:
    """A queue as raft-queue keeps one: ready messages in enqueue order, leases that end with an ack or run out (the
    message is ready again at its place)."""

    def __init__(self) -> None:
        self.messages: dict[str, _Message] = {}
        self.receipts: dict[str, tuple[str, int]] = {}

    def enqueue(self, body: str) -> None:
        self.messages[body] = _Message(body, len(self.messages))

    def ready(self) -> list[_Message]:
        return sorted((x for x in self.messages.values() if x.state == "ready"), key=lambda x: x.seq)

    def lease(self, m: int) -> list[Json]:
        out: list[Json] = []
        for x in self.ready()[:m]:
            x.state = "leased"
            x.count += 1
            delivery = msg(x.body, count=x.count)
            self.receipts[str(delivery["receipt"])] = (x.body, x.count)
            out.append(delivery)
        return out

    def ack(self, receipt: str) -> str:
        body, count = self.receipts[receipt]
        x = self.messages[body]
        if x.state == "leased" and x.count == count:
            x.state = "deleted"
            return "acked"
        return "stale"

    def leased(self) -> list[_Message]:
        return [x for x in self.messages.values() if x.state == "leased"]


@dataclass
class _Request:
    invoke: Event
    kind: Literal["enqueue", "receive", "ack"]
    arg: str
    applied: bool = False
    result: Json = None


def simulate_leases(
    seed: int,
    *,
    processes: int,
    ops: int,
    p_info: float = 0.1,
    p_expire: float = 0.0,
    writers: int | None = None,
    queue: str = "q",
) -> HistoryWriter:
    """Like :func:`simulate`, with the real workload's consumers: each ok receive is acked, the ack retried until
    answered (an unknown attempt may take effect later, or never; the retry answers stale if one did), and
    sometimes given up. Leases run out at random moments with probability ``p_expire`` per step, and all at the end,
    while the final drain reads: the drain gets what was ready first, then the rest. With ``writers``, processes
    below it only enqueue and the others only receive (as in the workload), else each does either."""
    sim = _LeaseSimulation(seed, queue)
    rng = sim.rng
    while sim.started < ops or sim.flying or sim.to_ack:
        x = rng.random()
        if sim.floating and x < 0.05:
            sim.apply(sim.floating.pop(rng.randrange(len(sim.floating))))
            continue
        if 0.05 <= x < 0.05 + p_expire and sim.real.leased():
            rng.choice(sim.real.leased()).state = "ready"
            continue
        p = rng.randrange(processes)
        r = sim.flying.get(p)
        if r is None:
            sim.start(p, ops=ops, writers=writers)
        elif not r.applied and rng.random() < 0.6:
            sim.end_unapplied(p, r, p_info=p_info)
        elif r.applied:
            sim.end_applied(p, r, p_info=p_info)
    for r in sim.floating:
        if rng.random() < 0.5:
            sim.apply(r)
    sim.drain(processes)
    return sim.w


class _LeaseSimulation:
    """The state of :func:`simulate_leases`: the real queue, the requests in flight, the info requests that may
    still take effect, and the receipt each consumer is acking."""

    def __init__(self, seed: int, queue: str) -> None:
        self.rng = random.Random(seed)
        self.w = writer()
        self.queue = queue
        self.real = _LeaseQueue()
        self.flying: dict[int, _Request] = {}
        self.floating: list[_Request] = []
        self.to_ack: dict[int, str] = {}
        self.started = 0

    def apply(self, r: _Request) -> None:
        if r.kind == "enqueue":
            self.real.enqueue(r.arg)
            r.result = enq_ok(r.arg, f"id-{r.arg}")
        elif r.kind == "receive":
            r.result = self.real.lease(1)
        else:
            r.result = {"receipts": [r.arg], "outcomes": [self.real.ack(r.arg)]}
        r.applied = True

    def start(self, p: int, *, ops: int, writers: int | None) -> None:
        """Process ``p`` invokes its ack (if it has one to make), else an enqueue or a receive (if ops are left)."""
        w, queue = self.w, self.queue
        if p in self.to_ack:
            self.flying[p] = _Request(w.invoke(p, "ack", queue, {"receipts": [self.to_ack[p]]}), "ack", self.to_ack[p])
        elif self.started < ops:
            self.started += 1
            if (self.rng.random() < 0.5) if writers is None else p < writers:
                body = f"v{self.started}"
                self.flying[p] = _Request(w.invoke(p, "enqueue", queue, enq(body)), "enqueue", body)
            else:
                self.flying[p] = _Request(w.invoke(p, "receive", queue, {"max_messages": 1}), "receive", "")

    def end_unapplied(self, p: int, r: _Request, *, p_info: float) -> None:
        """A request not applied yet ends info (may still take effect; a consumer may give up its ack), or takes
        effect."""
        if self.rng.random() < p_info:
            self.w.info(r.invoke, "timeout")
            if self.rng.random() < 0.5:
                self.floating.append(r)
            del self.flying[p]
            if r.kind == "ack" and self.rng.random() < 0.2:
                del self.to_ack[p]  # the consumer gives up
        else:
            self.apply(r)

    def end_applied(self, p: int, r: _Request, *, p_info: float) -> None:
        """A request that took effect ends info or ok (an ok receive gives its consumer a receipt to ack)."""
        if self.rng.random() < p_info:
            self.w.info(r.invoke, "timeout")
        else:
            self.w.ok(r.invoke, r.result)
            if r.kind == "receive" and isinstance(r.result, list) and r.result:
                first = r.result[0]
                assert isinstance(first, dict)
                self.to_ack[p] = str(first["receipt"])
            elif r.kind == "ack":
                del self.to_ack[p]
        del self.flying[p]

    def drain(self, process: int) -> None:
        """The final drain: what was ready first (some of it), then every lease runs out, then the rest."""
        real = self.real
        inv = self.w.invoke(process, "drain", self.queue, None)
        read: list[Json] = []
        ready = real.ready()
        for message in ready[: self.rng.randint(0, len(ready))]:
            read.extend(real.lease(1))
            message.state = "deleted"
        for message in real.leased():
            message.state = "ready"
        for message in real.ready():
            read.extend(real.lease(1))
            message.state = "deleted"
        self.w.ok(inv, read)


@SETTINGS
@given(
    st.integers(0, 2**32),
    st.integers(2, 6),
    st.integers(1, 40),
    st.sampled_from([0.0, 0.1, 0.3]),
    st.sampled_from([0.0, 0.02]),
)
def test_simulated_histories_with_leases_that_run_out_are_linearizable(
    seed: int, processes: int, n: int, p_info: float, p_expire: float
) -> None:
    w = simulate_leases(seed, processes=processes, ops=n, p_info=p_info, p_expire=p_expire)
    r = check_queue_linearizable(w.events, "q", include_drain=True)
    assert r.valid is True, r.reason
    if p_expire == 0.0:
        # no lease ran out during the workload: without the drain, it is the model without leases
        assert check_queue_linearizable(w.events, "q").valid is True


@pytest.mark.parametrize(
    ("processes", "writers", "ops", "p_info", "p_expire"),
    [(8, None, 200, 0.1, 0.01), (5, 3, 1000, 0.3, 0.0)],  # the second: the workload's shape, many timeouts
)
def test_the_search_is_fast_on_histories_with_leases_that_run_out(
    processes: int, writers: int | None, ops: int, p_info: float, p_expire: float
) -> None:
    slowest = 0.0
    redelivered = 0
    for seed in range(3):
        w = simulate_leases(seed, processes=processes, writers=writers, ops=ops, p_info=p_info, p_expire=p_expire)
        model, _ = queue_ops(w.events, "q", include_drain=True)
        redelivered += sum(c > 1 for op in model for c in op.counts)
        t0 = time.perf_counter()
        r = check_queue_linearizable(w.events, "q", include_drain=True)
        slowest = max(slowest, time.perf_counter() - t0)
        assert r.valid is True, r.reason
    assert redelivered >= 10
    assert slowest < 1.0, slowest
