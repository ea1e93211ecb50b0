"""Consume-transform-produce: each input transformed exactly once, or left untouched in its queue."""

from __future__ import annotations

from chaos.check_linear import check_linearizable
from chaos.check_once import check_exactly_once
from chaos.check_queue import check_total_queue
from chaos.check_txn import check_txn
from chaos.check_vacuity import check_vacuity
from chaos.history import HistoryWriter, Json
from tests.unit.chaos_checks import ack, drain, enqueue, msg, receive, writer

SETUP, T1, T2, DRAIN_SRC, DRAIN_DST = 100, 101, 102, 103, 104


def setup(w: HistoryWriter, *bodies: str) -> None:
    inv = w.invoke(SETUP, "txn-setup", "tsrc", {"bodies": list(bodies), "keys": list(bodies)}, node="n1")
    w.ok(inv, {"bodies": list(bodies), "keys": list(bodies), "message_ids": [f"id-{b}" for b in bodies]})


def txn_value(body: str, receipt: str) -> dict[str, Json]:
    return {
        "transaction_id": f"xf-id-{body}",
        "input": body,
        "input_message_id": f"id-{body}",
        "receipt": receipt,
        "output": f"out-{body}",
    }


def take(w: HistoryWriter, process: int, body: str, count: int = 1) -> str:
    """An ok txn-receive of ``body``; returns its receipt."""
    m = msg(body, f"id-{body}", count=count)
    inv = w.invoke(process, "txn-receive", "tsrc", {"max_messages": 1, "receive_attempt_id": f"a-{body}-{count}"})
    w.ok(inv, [m])
    return str(m["receipt"])


def commit(
    w: HistoryWriter, process: int, body: str, receipt: str, *, duplicate: bool = False, out_id: str = ""
) -> None:
    value = txn_value(body, receipt)
    inv = w.invoke(process, "txn", "tsrc", value, node="n1")
    result: dict[str, Json] = {
        **value,
        "duplicate": duplicate,
        "decided_index": 7,
        "ack_outcomes": ["acked"],
        "output_message_id": out_id or f"id-out-{body}",
    }
    w.ok(inv, result)


def txn_unknown(w: HistoryWriter, process: int, body: str, receipt: str) -> None:
    value = txn_value(body, receipt)
    w.info(w.invoke(process, "txn", "tsrc", value, node="n1"), "timeout", value=value)


def txn_fail(w: HistoryWriter, process: int, body: str, receipt: str, code: str) -> None:
    value = txn_value(body, receipt)
    w.fail(w.invoke(process, "txn", "tsrc", value, node="n1"), f"409 {code}", value=value)


def drains(w: HistoryWriter, left: list[str], outputs: list[str]) -> None:
    inv = w.invoke(DRAIN_SRC, "txn-drain", "tsrc", None)
    w.ok(inv, [msg(b, f"id-{b}", count=2) for b in left])
    inv = w.invoke(DRAIN_DST, "txn-drain", "tdst", None)
    w.ok(inv, [msg(b, f"id-{b}") for b in outputs])


def test_each_input_transformed_once_or_left_is_valid() -> None:
    w = writer()
    setup(w, "in-0", "in-1", "in-2", "in-3")
    commit(w, T1, "in-0", take(w, T1, "in-0"))
    # an unknown outcome, retried on another node: the first attempt had committed
    r1 = take(w, T2, "in-1")
    txn_unknown(w, T2, "in-1", r1)
    commit(w, T2, "in-1", r1, duplicate=True)
    # the lease ran out: aborted; received again and committed by the other transformer
    r2 = take(w, T1, "in-2")
    txn_fail(w, T1, "in-2", r2, "transaction_aborted")
    commit(w, T2, "in-2", take(w, T2, "in-2", count=2))
    # aborted, and never received again before the end: left in the source
    txn_fail(w, T1, "in-3", take(w, T1, "in-3"), "transaction_aborted")
    drains(w, ["in-3"], ["out-in-0", "out-in-1", "out-in-2"])
    r = check_txn(w.events)
    assert r.valid, r.problems
    assert (r.inputs, r.committed, r.transactions, r.duplicates_answered) == (4, 3, 6, 1)
    assert (r.aborted, r.conflicts, r.unknown_outcomes, r.other_failures) == (2, 0, 1, 0)
    assert (r.transformed, r.untransformed, r.missing_count, r.duplicated_count) == (3, 1, 0, 0)


def test_a_conflict_answered_by_the_other_transformers_commit_is_valid() -> None:
    w = writer()
    setup(w, "in-0")
    ra = take(w, T1, "in-0")
    txn_unknown(w, T1, "in-0", ra)
    commit(w, T2, "in-0", take(w, T2, "in-0", count=2))
    txn_fail(w, T1, "in-0", ra, "transaction_conflict")
    inv = w.invoke(T1, "txn-get", "tsrc", {"transaction_id": "xf-id-in-0"})
    w.ok(inv, {"transaction_id": "xf-id-in-0", "status": "committed", "decided_index": 9, "output_message_id": None})
    drains(w, [], ["out-in-0"])
    r = check_txn(w.events)
    assert r.valid, r.problems
    assert (r.committed, r.conflicts, r.unknown_outcomes) == (1, 1, 1)


def test_an_output_whose_transaction_never_answered_ok_still_counts_once() -> None:
    w = writer()
    setup(w, "in-0", "in-1")
    commit(w, T1, "in-0", take(w, T1, "in-0"))
    txn_unknown(w, T2, "in-1", take(w, T2, "in-1"))  # the transformer was stopped; it had committed
    drains(w, [], ["out-in-0", "out-in-1"])
    r = check_txn(w.events)
    assert r.valid, r.problems
    assert (r.committed, r.transformed) == (1, 2)


def test_a_duplicated_output_is_invalid() -> None:
    w = writer()
    setup(w, "in-0")
    commit(w, T1, "in-0", take(w, T1, "in-0"))
    drains(w, [], ["out-in-0", "out-in-0"])
    r = check_txn(w.events)
    assert not r.valid
    assert r.duplicated_outputs == {"out-in-0": 2} and r.duplicated_count == 1


def test_a_missing_output_is_invalid() -> None:
    w = writer()
    setup(w, "in-0", "in-1")
    commit(w, T1, "in-0", take(w, T1, "in-0"))
    commit(w, T1, "in-1", take(w, T1, "in-1"))
    drains(w, [], ["out-in-0"])
    r = check_txn(w.events)
    assert not r.valid
    assert r.missing == ["in-1"] and r.missing_count == 1
    assert r.ok_missing == ["in-1"]


def test_an_input_that_vanished_without_a_transaction_is_missing() -> None:
    w = writer()
    setup(w, "in-0", "in-1")
    commit(w, T1, "in-0", take(w, T1, "in-0"))
    drains(w, [], ["out-in-0"])
    r = check_txn(w.events)
    assert not r.valid and r.missing == ["in-1"] and r.ok_missing == []


def test_an_output_with_no_input_is_invalid() -> None:
    w = writer()
    setup(w, "in-0")
    commit(w, T1, "in-0", take(w, T1, "in-0"))
    drains(w, [], ["out-in-0", "out-in-7"])
    r = check_txn(w.events)
    assert not r.valid and r.orphan_outputs == ["out-in-7"]


def test_an_input_both_left_in_the_source_and_transformed_is_invalid() -> None:
    w = writer()
    setup(w, "in-0", "in-1")
    commit(w, T1, "in-0", take(w, T1, "in-0"))
    commit(w, T1, "in-1", take(w, T1, "in-1"))
    drains(w, ["in-1"], ["out-in-0", "out-in-1"])
    r = check_txn(w.events)
    assert not r.valid and r.both == ["in-1"]
    assert r.missing == [] and r.untransformed == 0


def test_an_output_id_other_than_the_committed_answer_is_invalid() -> None:
    w = writer()
    setup(w, "in-0")
    r0 = take(w, T1, "in-0")
    commit(w, T1, "in-0", r0, out_id="id-out-in-0")
    commit(w, T1, "in-0", r0, duplicate=True, out_id="id-other")
    drains(w, [], ["out-in-0"])
    r = check_txn(w.events)
    assert not r.valid
    assert r.output_id_mismatch == {"in-0": {"answered": ["id-other", "id-out-in-0"], "drained": ["id-out-in-0"]}}


def test_nothing_committed_is_vacuous() -> None:
    w = writer()
    setup(w, "in-0")
    txn_fail(w, T1, "in-0", take(w, T1, "in-0"), "transaction_aborted")
    drains(w, ["in-0"], [])
    r = check_txn(w.events)
    assert not r.valid and r.committed == 0 and r.untransformed == 1
    assert any("vacuous" in p for p in r.problems)


def test_an_incomplete_drain_is_invalid() -> None:
    w = writer()
    setup(w, "in-0")
    commit(w, T1, "in-0", take(w, T1, "in-0"))
    inv = w.invoke(DRAIN_SRC, "txn-drain", "tsrc", None)
    w.ok(inv, [])
    w.info(w.invoke(DRAIN_DST, "txn-drain", "tdst", None), "drain deadline passed", value=[])
    r = check_txn(w.events)
    assert not r.valid and any("no complete drain of tdst" in p for p in r.problems)


def test_the_other_checkers_ignore_the_transaction_ops() -> None:
    w = writer()
    enqueue(w, 1, "a")
    ack(w, 2, receive(w, 2, "a"))
    enqueue(w, 1, "b")
    setup(w, "in-0", "in-1")
    commit(w, T1, "in-0", take(w, T1, "in-0"))
    drain(w, msg("b"))
    drains(w, ["in-1"], ["out-in-0"])
    assert check_txn(w.events).valid
    queue = check_total_queue(w.events)
    assert queue.valid and queue.attempt_count == 2 and queue.dequeue_count == 2
    once = check_exactly_once(w.events)
    assert once.valid and once.messages_seen == 2
    assert check_linearizable(w.events, ["q"], include_drain=True).valid is True
    vacuity = check_vacuity(w.events, require_fault=False)
    assert vacuity.valid and vacuity.drains == 1
