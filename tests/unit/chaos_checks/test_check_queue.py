"""Total queue: lost, unexpected, duplicated, recovered, on hand-made histories."""

from __future__ import annotations

import pytest

from chaos.check_queue import check_total_queue
from chaos.history import HistoryError
from tests.unit.chaos_checks import ack, drain, enq, enq_ok, enqueue, msg, receive, writer


def test_every_acknowledged_message_consumed_once_is_valid() -> None:
    w = writer()
    enqueue(w, 1, "a")
    enqueue(w, 2, "b")
    enqueue(w, 1, "c")
    ack(w, 3, receive(w, 3, "a", "b", max_messages=2))
    drain(w, msg("c"))
    r = check_total_queue(w.events)
    assert r.valid
    assert (r.attempt_count, r.acknowledged_count, r.ok_count, r.dequeue_count) == (3, 3, 3, 3)
    assert (r.lost, r.unexpected, r.duplicated, r.recovered, r.uncertain) == ([], [], {}, [], [])
    assert r.acknowledged_by_process == {"1": 2, "2": 1}


def test_an_acknowledged_message_never_dequeued_is_lost_and_charged_to_its_writer() -> None:
    w = writer()
    enqueue(w, 1, "a")
    enqueue(w, 2, "b")
    enqueue(w, 2, "c")
    receive(w, 3, "b")  # received but never acked: the lease runs out, it must come back
    drain(w, msg("a"))
    r = check_total_queue(w.events)
    assert not r.valid
    assert r.lost == ["b", "c"] and r.lost_count == 2
    assert r.lost_by_process == {"2": 2}


def test_a_message_nobody_enqueued_is_unexpected() -> None:
    w = writer()
    enqueue(w, 1, "a")
    drain(w, msg("a"), msg("ghost"))
    r = check_total_queue(w.events)
    assert not r.valid and r.unexpected == ["ghost"] and r.failed_but_dequeued == []


def test_a_message_whose_enqueue_definitely_failed_is_unexpected() -> None:
    w = writer()
    w.fail(w.invoke(1, "enqueue", "q", enq("a")), "503 not_leader")
    drain(w, msg("a"))
    r = check_total_queue(w.events)
    assert not r.valid and r.unexpected == ["a"] and r.failed_but_dequeued == ["a"] and r.recovered == []


def test_two_acked_deliveries_of_one_message_are_a_duplicate() -> None:
    w = writer()
    enqueue(w, 1, "a")
    r1 = receive(w, 2, "a")
    inv = w.invoke(3, "receive", "q", {"max_messages": 1})
    w.ok(inv, [msg("a", receipt="r-second", count=2)])
    ack(w, 2, r1)
    ack(w, 3, ["r-second"])
    drain(w)
    r = check_total_queue(w.events)
    assert not r.valid and r.duplicated == {"a": 2} and r.duplicated_count == 1


def test_a_message_drained_after_its_ack_succeeded_is_a_duplicate() -> None:
    w = writer()
    enqueue(w, 1, "a")
    ack(w, 2, receive(w, 2, "a"))
    drain(w, msg("a", receipt="r-drain", count=2))
    assert check_total_queue(w.events).duplicated == {"a": 2}


def test_redelivery_after_a_stale_ack_is_not_a_duplicate() -> None:
    w = writer()
    enqueue(w, 1, "a")
    first = receive(w, 2, "a")  # the lease runs out before the ack
    inv = w.invoke(3, "receive", "q", {"max_messages": 1})
    w.ok(inv, [msg("a", receipt="r2", count=2)])
    ack(w, 2, first, ["stale"])
    ack(w, 3, ["r2"])
    drain(w)
    r = check_total_queue(w.events)
    assert r.valid and r.dequeue_count == 1


def test_the_same_receipt_acked_twice_is_one_consume() -> None:
    w = writer()
    enqueue(w, 1, "a")
    receipts = receive(w, 2, "a")
    ack(w, 2, receipts)
    ack(w, 2, receipts)  # a retried ack
    drain(w)
    assert check_total_queue(w.events).valid


def test_unknown_enqueues_may_or_may_not_appear() -> None:
    w = writer()
    w.info(w.invoke(1, "enqueue", "q", enq("a", "ka")), "timeout")
    w.info(w.invoke(2, "enqueue", "q", enq("b", "kb")), "503 outcome_unknown")
    w.invoke(3, "enqueue", "q", enq("c"))  # never completed: the client died
    drain(w, msg("a"))
    r = check_total_queue(w.events)
    assert r.valid
    assert r.recovered == ["a"] and r.lost == [] and r.acknowledged_count == 0 and r.attempt_count == 3


def test_a_retried_enqueue_that_finally_succeeds_is_one_message() -> None:
    w = writer()
    w.info(w.invoke(1, "enqueue", "q", enq("a", "ka")), "timeout")
    w.ok(w.invoke(1, "enqueue", "q", enq("a", "ka")), {**enq_ok("a", "id-a", "ka"), "duplicate": True})
    drain(w, msg("a"))
    r = check_total_queue(w.events)
    assert r.valid and r.recovered == [] and r.ok_count == 1


def test_an_ack_with_unknown_outcome_makes_the_message_uncertain_not_lost() -> None:
    w = writer()
    enqueue(w, 1, "a")
    enqueue(w, 1, "b")
    (ra,) = receive(w, 2, "a")
    w.info(w.invoke(2, "ack", "q", {"receipts": [ra]}), "timeout")
    drain(w)
    r = check_total_queue(w.events)
    assert not r.valid  # b is still lost
    assert r.lost == ["b"] and r.uncertain == ["a"] and r.uncertain_count == 1


def test_an_uncertain_ack_whose_message_came_back_is_just_dequeued() -> None:
    w = writer()
    enqueue(w, 1, "a")
    (ra,) = receive(w, 2, "a")
    w.info(w.invoke(2, "ack", "q", {"receipts": [ra]}), "timeout")
    drain(w, msg("a", receipt="r-later", count=2))
    r = check_total_queue(w.events)
    assert r.valid and r.uncertain == []


def test_acking_a_receipt_no_receive_returned_is_a_broken_history() -> None:
    w = writer()
    ack(w, 1, ["made-up"])
    with pytest.raises(HistoryError, match="no ok receive returned"):
        check_total_queue(w.events)
