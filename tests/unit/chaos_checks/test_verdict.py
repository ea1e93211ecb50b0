"""The combined report: every checker on one history, merged validity, the table row."""

from __future__ import annotations

import json

import pytest

from chaos.check_availability import check_availability
from chaos.check_linear import check_linearizable
from chaos.check_once import check_exactly_once
from chaos.check_queue import check_total_queue
from chaos.check_vacuity import check_vacuity
from chaos.history import HistoryWriter
from chaos.verdict import CheckResult, build_report, format_table, table_row, verdict_word
from tests.unit.chaos_checks import ack, drain, enq, enq_ok, msg, receive


def history(*, lose: bool) -> HistoryWriter:
    w = HistoryWriter(clock=lambda: 0.0)
    for i in range(3):
        w.ok(w.invoke(1, "enqueue", "q", enq(f"v{i}", f"k{i}"), at=i * 0.1), enq_ok(f"v{i}", f"id-v{i}", f"k{i}"))
    w.nemesis("start-fault", "kill leader", at=1.0)
    w.ok(w.invoke(1, "enqueue", "q", enq("v3", "k3"), at=1.1), enq_ok("v3", "id-v3", "k3"), at=1.6)
    w.nemesis("stop-fault", "restart", at=2.0)
    ack(w, 2, receive(w, 2, "v0"))
    w.ok(w.invoke(1, "enqueue", "q", enq("v4", "k4"), at=2.1), enq_ok("v4", "id-v4", "k4"), at=2.3)
    drain(w, *(msg(f"v{i}") for i in range(1, 4 if lose else 5)))
    return w


def checks(w: HistoryWriter) -> dict[str, CheckResult]:
    return {
        "queue": check_total_queue(w.events),
        "once": check_exactly_once(w.events),
        "linear": check_linearizable(w.events, include_drain=True),
        "availability": check_availability(w.events),
        "vacuity": check_vacuity(w.events),
    }


def test_a_clean_run_is_valid_and_its_report_is_json() -> None:
    w = history(lose=False)
    report = build_report(checks(w), history=w.events, run="kill-leader")
    assert report["valid"] is True
    assert json.loads(json.dumps(report)) == report
    assert report["summary"] == {
        "run": "kill-leader",
        "operations": 8,
        "lost": 0,
        "duplicated": 0,
        "unexpected": 0,
        "failover_p50_s": pytest.approx(0.6),
        "failover_p99_s": pytest.approx(0.6),
        "recovery_s": "no baseline",  # the fault comes before a whole bucket after the warm-up
        "verdict": "valid",
    }
    queue = report["queue"]
    assert isinstance(queue, dict) and queue["acknowledged_count"] == 5


def test_a_lost_message_makes_the_run_invalid() -> None:
    w = history(lose=True)
    results = checks(w)
    report = build_report(results, history=w.events)
    assert report["valid"] is False
    summary = report["summary"]
    assert isinstance(summary, dict) and summary["lost"] == 1 and summary["verdict"] == "INVALID"
    linear = report["linear"]
    assert isinstance(linear, dict) and linear["valid"] is False  # with the drain, the loss is not linearizable
    table = format_table([summary, table_row(results, operations=None, run="x")])
    lines = table.splitlines()
    assert lines[0].startswith("| run | operations | lost |") and len(lines) == 4
    assert "| 0.600 | 0.600 | no baseline | INVALID |" in lines[2] and "| - |" in lines[3]


def test_unknown_dominates_valid_and_invalid_dominates_unknown() -> None:
    w = history(lose=False)
    unknown = check_linearizable(w.events, max_steps=1)
    assert unknown.valid == "unknown"
    assert build_report({"queue": check_total_queue(w.events), "linear": unknown})["valid"] == "unknown"
    bad = check_total_queue(history(lose=True).events)
    assert build_report({"queue": bad, "linear": unknown})["valid"] is False
    assert build_report({})["valid"] == "unknown"
    assert [verdict_word(v) for v in (True, False, "unknown")] == ["valid", "INVALID", "unknown"]


def test_reserved_names_are_refused() -> None:
    with pytest.raises(ValueError, match="reserved"):
        build_report({"valid": check_total_queue([])})
