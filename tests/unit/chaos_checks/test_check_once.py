"""Exactly-once: one message per idempotency key, one consume per message."""

from __future__ import annotations

from chaos.check_once import check_exactly_once
from tests.unit.chaos_checks import ack, drain, enq, enq_ok, msg, receive, writer


def test_a_retried_keyed_enqueue_is_one_message_consumed_once() -> None:
    w = writer()
    w.info(w.invoke(1, "enqueue", "q", enq("a", "k1")), "timeout")
    w.ok(w.invoke(1, "enqueue", "q", enq("a", "k1")), {**enq_ok("a", "m1", "k1"), "duplicate": True})
    w.ok(w.invoke(2, "enqueue", "q", enq("a", "k1")), {**enq_ok("a", "m1", "k1"), "duplicate": True})
    inv = w.invoke(3, "receive", "q", {"max_messages": 1})
    w.ok(inv, [msg("a", "m1", "r1")])
    ack(w, 3, ["r1"])
    drain(w)
    r = check_exactly_once(w.events)
    assert r.valid
    assert (r.keys, r.messages_seen, r.consumes) == (1, 1, 1)


def test_two_messages_for_one_key_are_a_violation() -> None:
    w = writer()
    w.info(w.invoke(1, "enqueue", "q", enq("a", "k1")), "timeout")
    w.ok(w.invoke(1, "enqueue", "q", enq("a", "k1")), enq_ok("a", "m2", "k1"))
    drain(w, msg("a", "m1"), msg("a", "m2"))
    r = check_exactly_once(w.events)
    assert not r.valid and r.key_messages == {"k1": ["m1", "m2"]}


def test_a_second_message_for_a_key_counts_even_if_only_received() -> None:
    w = writer()
    w.ok(w.invoke(1, "enqueue", "q", enq("a", "k1")), enq_ok("a", "m1", "k1"))
    inv = w.invoke(2, "receive", "q", {"max_messages": 2})
    w.ok(inv, [msg("a", "m1"), msg("a", "m9")])
    r = check_exactly_once(w.events)
    assert not r.valid and r.key_messages == {"k1": ["m1", "m9"]}


def test_ok_enqueues_with_one_key_must_answer_one_message_id() -> None:
    w = writer()
    w.ok(w.invoke(1, "enqueue", "q", enq("a", "k1")), enq_ok("a", "m1", "k1"))
    w.ok(w.invoke(2, "enqueue", "q", enq("a", "k1")), enq_ok("a", "m2", "k1"))
    r = check_exactly_once(w.events)
    assert not r.valid and r.key_enqueue_ids == {"k1": ["m1", "m2"]}


def test_a_message_acked_through_two_deliveries_is_consumed_twice() -> None:
    w = writer()
    w.ok(w.invoke(1, "enqueue", "q", enq("a", "k1")), enq_ok("a", "m1", "k1"))
    inv = w.invoke(2, "receive", "q", None)
    w.ok(inv, [msg("a", "m1", "r1", 1)])
    inv = w.invoke(3, "receive", "q", None)
    w.ok(inv, [msg("a", "m1", "r2", 2)])
    ack(w, 2, ["r1"])
    ack(w, 3, ["r2"])
    r = check_exactly_once(w.events)
    assert not r.valid and list(r.multi_consumed) == ["m1"] and len(r.multi_consumed["m1"]) == 2
    assert r.key_messages == {}


def test_acked_then_drained_is_consumed_twice() -> None:
    w = writer()
    w.ok(w.invoke(1, "enqueue", "q", enq("a")), enq_ok("a", "m1"))
    ack(w, 2, receive(w, 2, "a"))
    drain(w, msg("a", "id-a", "r-drain", 2))
    r = check_exactly_once(w.events)
    assert not r.valid and len(r.multi_consumed["id-a"]) == 2


def test_a_stale_ack_is_not_a_consume() -> None:
    w = writer()
    w.ok(w.invoke(1, "enqueue", "q", enq("a", "k1")), enq_ok("a", "m1", "k1"))
    inv = w.invoke(2, "receive", "q", None)
    w.ok(inv, [msg("a", "m1", "r1", 1)])
    inv = w.invoke(3, "receive", "q", None)
    w.ok(inv, [msg("a", "m1", "r2", 2)])
    ack(w, 2, ["r1"], ["stale"])
    ack(w, 3, ["r2"])
    assert check_exactly_once(w.events).valid
