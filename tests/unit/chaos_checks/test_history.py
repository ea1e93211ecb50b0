"""The history format: writing, reading, pairing, typed views."""

from __future__ import annotations

import itertools
import json
import threading
from pathlib import Path

import pytest

from chaos.history import (
    Event,
    HistoryError,
    HistoryWriter,
    Json,
    Operation,
    deliveries,
    enqueue_value,
    fault_windows,
    pair_operations,
    parse_history,
    read_history,
    receive_max_messages,
    settle_outcomes,
    to_jsonable,
    write_history,
)
from tests.unit.chaos_checks import enq, enq_ok, msg, writer


def test_writer_appends_flushed_lines_that_read_back_identically(tmp_path: Path) -> None:
    path = tmp_path / "history.jsonl"
    with HistoryWriter(path) as w:
        inv = w.invoke(3, "enqueue", "q", enq("a", "k1"), node="n2")
        # flushed as written: readable while the writer is still open
        assert read_history(path) == [inv]
        done = w.info(inv, "timeout")
        w.nemesis("start-fault", {"kind": "kill", "node": "n1"})
    events = read_history(path)
    assert events == w.events
    assert [e.index for e in events] == [0, 1, 2]
    assert events[0].time <= events[1].time <= events[2].time
    assert done.node == "n2" and done.f == "enqueue" and done.error == "timeout"
    raw = json.loads(path.read_text().splitlines()[2])
    assert raw == {
        "index": 2,
        "time": raw["time"],
        "process": "nemesis",
        "type": "info",
        "f": "start-fault",
        "queue": None,
        "value": {"kind": "kill", "node": "n1"},
        "node": None,
        "error": None,
    }


def test_the_writer_refuses_to_append_to_an_existing_history(tmp_path: Path) -> None:
    path = tmp_path / "h.jsonl"
    with HistoryWriter(path) as w:
        w.nemesis("start-fault", "x")
    with pytest.raises(HistoryError, match="already holds a history"):
        HistoryWriter(path)


def test_write_history_round_trips(tmp_path: Path) -> None:
    w = writer()
    inv = w.invoke(1, "receive", "q", {"max_messages": 2})
    w.ok(inv, [msg("a"), msg("b")])
    write_history(tmp_path / "h.jsonl", w.events)
    assert read_history(tmp_path / "h.jsonl") == w.events


def test_concurrent_writers_get_unique_ordered_indices(tmp_path: Path) -> None:
    w = HistoryWriter(tmp_path / "h.jsonl")

    def client(p: int) -> None:
        for i in range(200):
            w.ok(w.invoke(p, "enqueue", "q", enq(f"{p}-{i}")), enq_ok(f"{p}-{i}", f"m{p}-{i}"))

    threads = [threading.Thread(target=client, args=(p,)) for p in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    w.close()
    events = read_history(tmp_path / "h.jsonl")
    assert [e.index for e in events] == list(range(1600))
    assert all(a.time <= b.time for a, b in itertools.pairwise(events))
    assert len(pair_operations(events)) == 800


def test_torn_last_line_is_dropped_but_a_torn_middle_line_is_an_error() -> None:
    good = json.dumps(Event(0, 0.0, 1, "invoke", "enqueue", "q", enq("a")).to_json())
    assert len(parse_history([good, '{"index": 1, "ti'])) == 1
    with pytest.raises(HistoryError, match="not JSON"):
        parse_history([good, '{"index": 1, "ti'], tolerate_torn_tail=False)
    with pytest.raises(HistoryError, match="line 1"):
        parse_history(['{"index": 1, "ti', good])


def test_duplicate_index_and_bad_fields_are_rejected() -> None:
    e = Event(0, 0.0, 1, "invoke", "enqueue", "q", enq("a")).to_json()
    with pytest.raises(HistoryError, match="twice"):
        parse_history([json.dumps(e), json.dumps(e)])
    bad_fields: list[tuple[str, Json]] = [
        ("type", "done"),
        ("process", "bob"),
        ("index", "1"),
        ("queue", 5),
        ("time", None),
    ]
    for field, bad in bad_fields:
        with pytest.raises(HistoryError):
            Event.from_json({**e, field: bad})
    del e["f"]
    with pytest.raises(HistoryError, match="lacks the field 'f'"):
        Event.from_json(e)


def test_pairing_matches_each_invoke_with_its_process_next_event() -> None:
    w = writer()
    a = w.invoke(1, "enqueue", "q", enq("a"))
    b = w.invoke(2, "receive", "q", None)
    w.ok(b, [])
    w.fail(a, "409 idempotency_key_conflict")
    c = w.invoke(1, "enqueue", "q", enq("c"))
    w.nemesis("start-fault", "partition")
    ops = pair_operations(w.events)
    assert [(op.f, op.type, op.start, op.end) for op in ops] == [
        ("enqueue", "fail", 0, 3),
        ("receive", "ok", 1, 2),
        ("enqueue", "info", 4, None),  # never completed: unknown
    ]
    assert ops[2].invoke == c and ops[2].completion is None
    assert ops[1].result == [] and ops[0].result is None


@pytest.mark.parametrize(
    ("events", "error"),
    [
        ([Event(0, 0, 1, "ok", "enqueue", "q")], "has no invoke"),
        ([Event(0, 0, 1, "invoke", "enqueue", "q"), Event(1, 0, 1, "invoke", "enqueue", "q")], "had not completed"),
        ([Event(0, 0, 1, "invoke", "enqueue", "q"), Event(1, 0, 1, "ok", "receive", "q")], "its invoke"),
    ],
)
def test_pairing_rejects_malformed_histories(events: list[Event], error: str) -> None:
    with pytest.raises(HistoryError, match=error):
        pair_operations(events)


def test_fault_windows_pair_by_id_else_oldest_open() -> None:
    w = writer()
    s1 = w.nemesis("start-fault", {"id": "p", "kind": "partition"})
    s2 = w.nemesis("start-fault", {"id": "k", "kind": "kill"})
    t2 = w.nemesis("stop-fault", {"id": "k"})
    t1 = w.nemesis("stop-fault", "heal")
    s3 = w.nemesis("start-fault", "clock skew")
    windows = fault_windows(w.events)
    assert [(x.start, x.stop) for x in windows] == [(s1, t1), (s2, t2), (s3, None)]
    w.nemesis("stop-fault", "heal")
    w.nemesis("stop-fault", "heal")
    with pytest.raises(HistoryError, match="ends no open fault"):
        fault_windows(w.events)


def test_typed_views_of_values() -> None:
    w = writer()
    e = w.invoke(1, "enqueue", "q", enq("a", "k"))
    w.ok(e, enq_ok("a", "m1", "k"))
    r = w.invoke(1, "receive", "q", {"max_messages": 3, "wait_s": 1})
    w.ok(r, [msg("a", "m1", "r1")])
    k = w.invoke(1, "ack", "q", {"receipts": ["r1", "r2"]})
    w.ok(k, {"receipts": ["r1", "r2"], "outcomes": ["acked", {"receipt": "r2", "outcome": "stale"}]})
    enq_op, recv_op, ack_op = pair_operations(w.events)
    v = enqueue_value(enq_op)
    assert (v.body, v.key, v.message_id) == ("a", "k", "m1")
    assert [(d.message_id, d.body, d.receipt, d.delivery_count) for d in deliveries(recv_op)] == [("m1", "a", "r1", 1)]
    assert receive_max_messages(recv_op) == 3
    assert settle_outcomes(ack_op) == [("r1", "acked"), ("r2", "stale")]


def test_typed_views_reject_malformed_values() -> None:
    w = writer()
    k = w.invoke(1, "ack", "q", {"receipts": ["r1", "r2"]})
    w.ok(k, {"outcomes": ["acked"]})
    e = w.invoke(1, "enqueue", "q", {"body": 5})
    w.ok(e, {"message_id": "m"})
    r = w.invoke(1, "receive", "q", {"max_messages": 0})
    w.ok(r, [{"body": "a"}])
    ack_op, enq_op, recv_op = pair_operations(w.events)
    with pytest.raises(HistoryError, match="one entry per receipt"):
        settle_outcomes(ack_op)
    with pytest.raises(HistoryError, match="body must be a string"):
        enqueue_value(enq_op)
    with pytest.raises(HistoryError, match="message_id and body"):
        deliveries(recv_op)
    with pytest.raises(HistoryError, match="max_messages"):
        receive_max_messages(recv_op)


def test_to_jsonable_handles_nested_results() -> None:
    w = writer()
    op = Operation(w.invoke(1, "drain", "q"), None)
    out = to_jsonable({"op": op, "s": {"b", "a"}, "t": (1, 2.5), 3: None, "p": Path("/x")})
    assert isinstance(out, dict)
    assert out["s"] == ["a", "b"]
    assert out["t"] == [1, 2.5] and out["3"] is None and out["p"] == "/x"
    assert json.loads(json.dumps(out)) == out
