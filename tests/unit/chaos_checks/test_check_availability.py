"""Availability: fault event -> first ok write invoked after it."""

from __future__ import annotations

import pytest

from chaos.check_availability import check_availability, describes_all_node_restart, percentile, stats
from chaos.history import HistoryWriter, Json
from tests.unit.chaos_checks import enq, enq_ok


def write(w: HistoryWriter, body: str, start: float, end: float, *, ok: bool = True, process: int = 1) -> None:
    inv = w.invoke(process, "enqueue", "q", enq(body), at=start)
    if ok:
        w.ok(inv, enq_ok(body, f"id-{body}"), at=end)
    else:
        w.info(inv, "timeout", at=end)


def test_gaps_are_measured_to_the_first_ok_write_sent_after_each_event() -> None:
    w = HistoryWriter(clock=lambda: 0.0)
    write(w, "a", 0.0, 0.1)
    inflight = w.invoke(2, "enqueue", "q", enq("b"), at=0.9)  # sent before the fault: proves nothing
    w.nemesis("start-fault", {"kind": "kill", "node": "n1"}, at=1.0)
    w.ok(inflight, enq_ok("b", "id-b"), at=1.1)
    write(w, "c", 1.2, 1.3, ok=False)
    write(w, "d", 1.4, 1.8)  # 0.8 s after the kill
    w.nemesis("stop-fault", {"kind": "restart", "node": "n1"}, at=3.0)
    write(w, "e", 3.1, 3.25)  # 0.25 s after the restart
    r = check_availability(w.events)
    assert r.valid and r.fault_events == 2
    assert r.after_start.count == 1 and r.after_start.p50 == pytest.approx(0.8)
    assert r.after_stop.p99 == pytest.approx(0.25) and r.overall.max == pytest.approx(0.8)
    assert r.all_node_restart_s == []


def test_the_earliest_completion_counts_not_the_earliest_invoke() -> None:
    w = HistoryWriter(clock=lambda: 0.0)
    w.nemesis("start-fault", "partition", at=0.0)
    slow = w.invoke(1, "enqueue", "q", enq("a"), at=0.1)
    write(w, "b", 0.2, 0.5, process=2)
    w.ok(slow, enq_ok("a", "id-a"), at=2.0)
    w.nemesis("stop-fault", "heal", at=3.0)
    write(w, "c", 3.0, 3.1)
    assert check_availability(w.events).after_start.max == pytest.approx(0.5)


def test_a_fault_with_no_ok_write_after_it_is_invalid() -> None:
    w = HistoryWriter(clock=lambda: 0.0)
    write(w, "a", 0.0, 0.1)
    w.nemesis("start-fault", "partition", at=1.0)
    write(w, "b", 1.1, 2.0, ok=False)
    w.nemesis("stop-fault", "heal", at=3.0)
    r = check_availability(w.events)
    assert not r.valid and [g.f for g in r.unrecovered] == ["start-fault", "stop-fault"]


def test_max_gap_applies_to_recovery_after_healing() -> None:
    w = HistoryWriter(clock=lambda: 0.0)
    w.nemesis("start-fault", "majority partition", at=0.0)
    w.nemesis("stop-fault", "heal", at=10.0)
    write(w, "a", 10.5, 13.0)
    assert check_availability(w.events, max_gap_s=5.0).valid  # 13 s after the start is fine: writes could not go
    r = check_availability(w.events, max_gap_s=2.0)
    assert not r.valid and [g.f for g in r.too_slow] == ["stop-fault"]


def test_first_write_after_an_all_node_restart_is_reported() -> None:
    w = HistoryWriter(clock=lambda: 0.0)
    w.nemesis("start-fault", {"id": 1, "kind": "restart-all", "how": "kill -9 all"}, at=0.0)
    w.nemesis("stop-fault", {"id": 1, "kind": "restart-all", "how": "start all"}, at=2.0)
    write(w, "a", 2.1, 4.5)
    w.nemesis("start-fault", "kill n2", at=5.0)
    w.nemesis("stop-fault", "restart n2", at=6.0)
    write(w, "b", 6.1, 6.2)
    r = check_availability(w.events)
    assert r.all_node_restart_s == [pytest.approx(2.5)]
    # failover leaves the all-node fault out: only "kill n2" (5.0 -> 6.2) counts
    assert r.failover.count == 1
    assert r.failover.p99 == pytest.approx(1.2)
    assert r.after_start.count == 2
    assert check_availability(w.events, max_failover_p99_s=5.0, max_restart_s=15.0).valid


def test_failover_p99_and_restart_limits_make_the_run_invalid() -> None:
    w = HistoryWriter(clock=lambda: 0.0)
    w.nemesis("start-fault", {"id": 1, "kind": "kill-all", "all_nodes": True, "description": "restart all nodes"})
    w.nemesis("stop-fault", {"id": 1, "kind": "restart", "all_nodes": True, "description": "restart all nodes"}, at=1.0)
    write(w, "a", 1.5, 20.0)  # 19 s after the restart
    w.nemesis("start-fault", "kill the leader", at=21.0)
    write(w, "b", 21.5, 27.5)  # 6.5 s to fail over
    w.nemesis("stop-fault", "restart it", at=28.0)
    write(w, "c", 28.1, 28.2)
    assert check_availability(w.events).valid  # no limits given
    r = check_availability(w.events, max_failover_p99_s=5.0, max_restart_s=15.0)
    assert not r.valid
    assert r.failover_too_slow == pytest.approx(6.5)
    assert r.slow_restarts == [pytest.approx(19.0)]
    assert check_availability(w.events, max_failover_p99_s=7.0, max_restart_s=20.0).valid


@pytest.mark.parametrize(
    ("description", "expected"),
    [
        ("restart-all", True),
        ("Restart all nodes", True),
        ("all-node restart", True),
        ("restart of every node", True),
        ({"kind": "power-cut", "all_nodes": True, "description": "restart after power cut"}, True),
        ({"kind": "restart", "node": "n1"}, False),
        ("kill leader", False),
        (None, False),
    ],
)
def test_all_node_restart_descriptions(description: Json, expected: bool) -> None:
    assert describes_all_node_restart(description) is expected


def test_nearest_rank_percentiles() -> None:
    xs = [float(x) for x in range(1, 101)]
    assert percentile(xs, 50) == 50 and percentile(xs, 99) == 99 and percentile(xs, 100) == 100
    assert percentile([3.0, 1.0, 2.0], 99) == 3.0 and percentile([7.0], 50) == 7.0
    assert stats([]).p50 is None
    with pytest.raises(ValueError):
        percentile([], 50)


def test_a_restart_cut_short_by_the_next_fault_is_listed_not_judged() -> None:
    restart_all: dict[str, Json] = {"kind": "kill-all", "all_nodes": True, "description": "restart all nodes"}
    w = HistoryWriter(clock=lambda: 0.0)
    w.nemesis("start-fault", {"id": 1, **restart_all}, at=0.0)
    w.nemesis("stop-fault", {"id": 1, **restart_all}, at=1.0)
    w.nemesis("start-fault", {"id": 2, **restart_all}, at=3.0)  # before any ok write: restart 1 is interrupted
    w.nemesis("stop-fault", {"id": 2, **restart_all}, at=5.0)
    write(w, "a", 5.5, 8.0)  # restart 2: 3 s
    r = check_availability(w.events, max_restart_s=15.0)
    assert r.valid and r.slow_restarts == [] and len(r.interrupted_restarts) == 1
    assert r.all_node_restart_s == [pytest.approx(7.0), pytest.approx(3.0)]


def test_a_restart_is_judged_when_the_next_fault_comes_after_the_limit() -> None:
    restart_all: dict[str, Json] = {"kind": "kill-all", "all_nodes": True, "description": "restart all nodes"}
    w = HistoryWriter(clock=lambda: 0.0)
    w.nemesis("start-fault", {"id": 1, **restart_all}, at=0.0)
    w.nemesis("stop-fault", {"id": 1, **restart_all}, at=1.0)
    w.nemesis("start-fault", {"id": 2, **restart_all}, at=20.0)  # 19 s without an ok write: too slow
    w.nemesis("stop-fault", {"id": 2, **restart_all}, at=21.0)
    write(w, "a", 21.5, 22.0)
    r = check_availability(w.events, max_restart_s=15.0)
    assert not r.valid and r.slow_restarts == [pytest.approx(21.0)] and r.interrupted_restarts == []


def test_every_restart_interrupted_means_none_was_measured() -> None:
    restart_all: dict[str, Json] = {"kind": "kill-all", "all_nodes": True, "description": "restart all nodes"}
    w = HistoryWriter(clock=lambda: 0.0)
    w.nemesis("start-fault", {"id": 1, **restart_all}, at=0.0)
    w.nemesis("stop-fault", {"id": 1, **restart_all}, at=1.0)
    w.nemesis("start-fault", "kill n1", at=2.0)
    write(w, "a", 2.5, 3.0)
    w.nemesis("stop-fault", "restart n1", at=4.0)
    write(w, "b", 4.5, 5.0)
    r = check_availability(w.events, max_restart_s=15.0)
    assert not r.valid and r.no_restart_measured
    assert check_availability(w.events).valid  # without the limit nothing is required
