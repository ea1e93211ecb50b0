"""Goodput per fault: ok operations per 0.5 s back to half the pre-fault median, on synthetic histories."""

from __future__ import annotations

import pytest

from chaos.check_availability import check_availability, describes_all_node_restart
from chaos.goodput import Goodput, bucket_counts, describe, first_recovered, measure_goodput
from chaos.history import Event, HistoryWriter, Json
from tests.unit.chaos_checks import enq, enq_ok

RATE = 10  # ok operations per 0.5 s while the cluster is healthy: the threshold is 5
ALL_NODES: dict[str, Json] = {"kind": "kill-all", "all_nodes": True, "description": "restart all nodes"}


class Load:
    """A synthetic history: ok enqueues (or timeouts) and faults at chosen times, written in time order."""

    def __init__(self) -> None:
        #: (time, sequence, what): an op's invoke and completion, or a nemesis event
        self.plan: list[tuple[float, int, tuple[Json, ...]]] = []
        self.n = 0

    def _at(self, t: float, *what: Json) -> None:
        self.plan.append((t, len(self.plan), what))

    def op(self, invoke: float, complete: float, *, ok: bool = True) -> None:
        body = f"m{self.n}"
        self.n += 1
        self._at(invoke, "invoke", body)
        self._at(complete, "ok" if ok else "info", body)

    def ops(self, start: float, end: float, per_half_second: int = RATE, *, ok: bool = True) -> None:
        """``per_half_second`` operations completing in every 0.5 s from ``start`` to ``end``, 10 ms each."""
        for k in range(round((end - start) * 2 * per_half_second)):
            t = start + k * 0.5 / per_half_second
            self.op(t, t + 0.01, ok=ok)

    def fault(self, fid: str, start: float, stop: float | None, description: dict[str, Json] | None = None) -> None:
        value: dict[str, Json] = {"id": fid, "kind": "partition-leader", **(description or {})}
        self._at(start, "start-fault", value)
        if stop is not None:
            self._at(stop, "stop-fault", {**value, "kind": "heal"})

    @property
    def events(self) -> list[Event]:
        w = HistoryWriter(clock=lambda: 0.0)
        invokes: dict[Json, Event] = {}
        for t, _, what in sorted(self.plan, key=lambda p: (p[0], p[1])):
            kind, arg = what
            if kind == "invoke":
                invokes[arg] = w.invoke(len(invokes), "enqueue", "q", enq(str(arg)), at=t)
            elif kind == "ok":
                w.ok(invokes[arg], enq_ok(str(arg), f"id-{arg}"), at=t)
            elif kind == "info":
                w.info(invokes[arg], "timeout", at=t)
            else:
                w.nemesis("start-fault" if kind == "start-fault" else "stop-fault", arg, at=t)
        return w.events


def goodput(events: list[Event]) -> Goodput:
    return measure_goodput(events, is_all_node=describes_all_node_restart)


def test_a_fault_that_recovers_in_time() -> None:
    load = Load()
    load.ops(0.0, 3.0)  # the workload starts at 0: warm-up to 0.5, then 5 whole buckets before the fault at 3.0
    load.fault("f0", 3.0, 5.0)
    load.ops(4.5, 8.0)  # nothing from 3.0 to 4.5: back in the bucket [4.5, 5.0)
    g = goodput(load.events)
    assert g.baseline == RATE and g.baseline_buckets == 5 and g.threshold == RATE / 2
    [r] = g.recoveries
    assert r.fault_id == "f0" and r.kind == "partition-leader" and not r.all_nodes
    assert r.measured_from == 3.0 and r.seconds == pytest.approx(2.0) and describe(r) == "2 s"
    result = check_availability(load.events, max_recovery_s=4.0)
    assert result.valid and result.slow_recoveries == [] and result.goodput == g


def test_a_fault_that_recovers_late_is_invalid_when_judged() -> None:
    load = Load()
    load.ops(0.0, 3.0)
    load.fault("f0", 3.0, 5.0)
    load.ops(3.0, 7.5, per_half_second=2)  # a trickle: the first ok write comes at once, the goodput does not
    load.ops(7.5, 10.0)
    [r] = goodput(load.events).recoveries
    assert r.seconds == pytest.approx(5.0)
    judged = check_availability(load.events, max_recovery_s=4.0)
    assert not judged.valid and [s.fault_id for s in judged.slow_recoveries] == ["f0"]
    assert judged.failover.p99 is not None and judged.failover.p99 < 0.1  # the old criterion saw nothing wrong
    assert check_availability(load.events).valid  # not judged: reported only


def test_a_fault_that_never_recovers() -> None:
    load = Load()
    load.ops(0.0, 3.0)
    load.fault("f0", 3.0, 4.0)
    load.ops(3.0, 9.0, per_half_second=4)  # below half the baseline to the end
    [r] = goodput(load.events).recoveries
    assert r.seconds is None and describe(r) == "never"
    result = check_availability(load.events, max_recovery_s=4.0)
    assert not result.valid and result.slow_recoveries == [r]


def test_an_all_node_fault_is_measured_from_its_end() -> None:
    load = Load()
    load.ops(0.0, 3.0)
    load.fault("all", 3.0, 9.0, ALL_NODES)  # 6 s down: nothing can succeed until the nodes are back
    load.ops(10.0, 13.0)
    load.fault("f1", 14.0, 15.0)
    load.ops(14.0, 16.0)
    everything, partition = goodput(load.events).recoveries
    assert everything.all_nodes and everything.measured_from == 9.0
    assert everything.seconds == pytest.approx(1.5)  # buckets from 9.0: [10.0, 10.5) is the first one back
    assert not partition.all_nodes and partition.seconds == pytest.approx(0.5)
    assert check_availability(load.events, max_recovery_s=4.0).valid


def test_a_fault_with_no_baseline_cannot_be_judged_and_is_invalid_when_it_must_be() -> None:
    load = Load()
    load.ops(0.0, 4.0)
    load.fault("f0", 0.8, 1.5)  # before a whole bucket after the warm-up: [0.5, 1.0) is cut by the fault
    g = goodput(load.events)
    assert g.baseline is None and g.baseline_buckets == 0 and g.threshold is None
    [r] = g.recoveries
    assert r.seconds is None and r.threshold is None and describe(r) == "no baseline"
    judged = check_availability(load.events, max_recovery_s=4.0)
    assert not judged.valid and judged.no_goodput_baseline and judged.slow_recoveries == []
    assert check_availability(load.events).valid


def test_a_baseline_of_nothing_is_no_baseline() -> None:
    load = Load()
    load.ops(0.0, 3.0, ok=False)  # every operation failed before the fault: half of 0 would prove nothing
    load.fault("f0", 3.0, 4.0)
    load.ops(3.0, 5.0)
    g = goodput(load.events)
    assert g.baseline is None and g.baseline_buckets == 5
    assert not check_availability(load.events, max_recovery_s=4.0).valid


def test_buckets_with_no_operations_count_zero() -> None:
    load = Load()
    load.ops(0.0, 1.5)  # buckets [0.5, 1.0), [1.0, 1.5) full ...
    load.ops(2.5, 3.0)  # ... then [1.5, 2.0) and [2.0, 2.5) empty, [2.5, 3.0) full: the median is full
    load.fault("f0", 3.0, 4.0)
    load.ops(5.0, 6.0)  # [3.0, 5.0): four empty buckets after the fault
    g = goodput(load.events)
    assert g.baseline_buckets == 5 and g.baseline == RATE
    assert [r.seconds for r in g.recoveries] == [pytest.approx(2.5)]
    load.ops(6.0, 8.0, per_half_second=3)  # an idle tail changes nothing
    assert [r.seconds for r in goodput(load.events).recoveries] == [pytest.approx(2.5)]


def test_an_empty_middle_pulls_the_median_down() -> None:
    load = Load()
    load.ops(0.0, 1.0)
    load.ops(2.5, 3.0)  # whole buckets 10, 0, 0, 0, 10: median 0, no baseline
    load.fault("f0", 3.0, 4.0)
    load.ops(3.0, 5.0)
    assert goodput(load.events).baseline is None


def test_operations_sent_before_the_fault_do_not_count_for_its_recovery() -> None:
    load = Load()
    load.ops(0.0, 3.0)
    load.fault("f0", 3.0, 4.0)
    for _ in range(RATE):  # committed before the fault, answered just after it
        load.op(2.99, 3.05)
    load.ops(4.0, 5.0)
    assert [r.seconds for r in goodput(load.events).recoveries] == [pytest.approx(1.5)]


def test_recovery_runs_across_the_next_fault() -> None:
    load = Load()
    load.ops(0.0, 3.0)
    load.fault("f0", 3.0, 4.0)
    load.fault("f1", 5.0, 6.0)
    load.ops(6.5, 8.0)
    assert [r.seconds for r in goodput(load.events).recoveries] == [pytest.approx(4.0), pytest.approx(2.0)]
    assert check_availability(load.events, max_recovery_s=4.0).valid  # exactly 4 s is within 4 s


def test_a_fault_that_never_stopped_is_measured_from_its_start() -> None:
    load = Load()
    load.ops(0.0, 3.0)
    load.fault("all", 3.0, None, ALL_NODES)
    load.ops(4.0, 5.0)
    [r] = goodput(load.events).recoveries
    assert r.all_nodes and r.stop is None and r.measured_from == 3.0 and r.seconds == pytest.approx(1.5)


def test_bucket_helpers() -> None:
    assert bucket_counts([0.0, 0.49, 0.5, 1.2, 1.5, -0.1], 0.0, 1.5) == [2, 1, 1]  # [1.5, ...) is not whole
    assert bucket_counts([1.0], 0.0, 0.4) == []
    assert first_recovered([0, 3, 5, 9], 5.0) == 1.5
    assert first_recovered([0, 4], 5.0) is None
