"""Availability: after each fault starts (and after it stops), how long until a write succeeds again.

For every nemesis ``start-fault`` and ``stop-fault`` event, the gap is the time from the event to the earliest
completion of an ok *write* (``enqueue`` or ``ack`` by default) **invoked after** the event (higher ``index``), as
in ``chaos/failover.py``: a write sent before the fault may have committed before it, so it proves nothing.

Percentiles are nearest-rank (the smallest value with at least p% of the values at or below it); with fewer than
100 values, p99 is the maximum.

**All-node restart.** For each fault window (start + stop, see :func:`chaos.history.fault_windows`) whose
description says every node was restarted, the gap from its stop-fault (the nodes are started again; the start if
it never stopped) to the first ok write is listed in ``all_node_restart_s``. A description says so when it is a
string, or an object whose ``"kind"``/``"fault"``/``"name"``/``"description"`` value is a string, matching
:data:`ALL_NODE_RESTART` (e.g. ``"restart-all"``, ``"restart all nodes"``, ``"all-node restart"``), or an object
with ``"all_nodes": true`` and such a field containing ``"restart"``.

**Failover** is the gap after each *start-fault* of a fault that leaves a majority running (every window except
the all-node ones, during which no write can succeed): ``failover`` holds its statistics.

``valid`` iff every fault event is followed by an ok write before the history ends and, when given:
``max_gap_s``: no gap after a *stop-fault* exceeds it (a fault itself may legitimately stop writes: a majority cut);
``max_failover_p99_s``: the failover p99 does not exceed it; ``max_restart_s``: no all-node restart takes longer,
and at least one all-node restart was measured when there were any. A restart is *interrupted* (listed, not
judged) when another fault started before its first ok write and within ``max_restart_s``: the cluster was taken
down again before it could answer, so the restart's own time is unknown.

**Goodput** (:mod:`chaos.goodput`): for every fault window, the time from its start (from its stop for an all-node
fault) until the ok operations per 0.5 s are back to half their pre-fault median, in ``goodput``. With
``max_recovery_s`` (the runner's criterion for the partition, pause and kill nemeses: 4 s), every window must recover
within it (``slow_recoveries`` lists those that did not, or never did), and a history with faults but no baseline
(``no_goodput_baseline``) is invalid: it cannot show a recovery.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field

from chaos.goodput import Goodput, Recovery, measure_goodput
from chaos.history import (
    START_FAULT,
    Event,
    Json,
    Operation,
    as_operations,
    fault_windows,
    nemesis_events,
)

ALL_NODE_RESTART = re.compile(
    r"restart[-_ ]?all|all[-_ ]?nodes?[-_ ]restart|restart[-_ ]?(of[-_ ])?(every|all)[-_ ]node"
)
DEFAULT_WRITES: frozenset[str] = frozenset({"enqueue", "ack"})


@dataclass(frozen=True)
class Stats:
    count: int
    p50: float | None
    p99: float | None
    max: float | None


@dataclass(frozen=True)
class Gap:
    event_index: int
    f: str
    description: Json
    time: float
    #: seconds from the event to the first ok write invoked after it; None if there was none
    seconds: float | None


@dataclass(frozen=True)
class AvailabilityResult:
    valid: bool
    fault_events: int
    after_start: Stats
    #: after_start without the all-node faults: the time to fail over while a majority runs
    failover: Stats
    after_stop: Stats
    overall: Stats
    all_node_restart_s: list[float | None]
    gaps: list[Gap]
    #: fault events with no ok write after them
    unrecovered: list[Gap] = field(default_factory=list)
    #: stop-fault gaps over max_gap_s
    too_slow: list[Gap] = field(default_factory=list)
    #: the failover p99 when it exceeds max_failover_p99_s
    failover_too_slow: float | None = None
    #: all-node restarts over max_restart_s (None: no ok write at all after it)
    slow_restarts: list[float | None] = field(default_factory=list)
    #: event indexes of all-node restarts cut short by the next fault (see the module docstring)
    interrupted_restarts: list[int] = field(default_factory=list)
    #: with max_restart_s: there were all-node restarts but none could be measured
    no_restart_measured: bool = False
    #: the pre-fault goodput and each fault window's recovery time (see chaos.goodput)
    goodput: Goodput | None = None
    #: with max_recovery_s: the windows that recovered later than it, or never
    slow_recoveries: list[Recovery] = field(default_factory=list)
    #: with max_recovery_s: there were faults but no baseline to measure their recovery against
    no_goodput_baseline: bool = False


def percentile(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile of a non-empty sequence."""
    if not values:
        raise ValueError("percentile of no values")
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]


def stats(values: Sequence[float]) -> Stats:
    if not values:
        return Stats(0, None, None, None)
    return Stats(len(values), percentile(values, 50), percentile(values, 99), max(values))


def describes_all_node_restart(description: Json) -> bool:
    if isinstance(description, str):
        return bool(ALL_NODE_RESTART.search(description.lower()))
    if isinstance(description, dict):
        texts = [
            v.lower() for k in ("kind", "fault", "name", "description") if isinstance(v := description.get(k), str)
        ]
        if any(ALL_NODE_RESTART.search(t) for t in texts):
            return True
        return description.get("all_nodes") is True and any("restart" in t for t in texts)
    return False


def _first_ok_write_after(event: Event, writes: Sequence[Operation]) -> float | None:
    # writes are in invoke order: the first invoked after the event is not necessarily the first to complete
    best: float | None = None
    for op in writes:
        if op.invoke.index > event.index and op.completion is not None:
            done = op.completion.time - event.time
            best = done if best is None else min(best, done)
    return best


@dataclass(frozen=True)
class _Restarts:
    """The all-node restarts of a history: the time to the first ok write after each, the start-fault events of
    their windows, the restarts cut short by the next fault (event indices, not judged), and the judged times."""

    seconds: list[float | None]
    starts: set[int]
    interrupted: list[int]
    judged: list[float | None]

    @staticmethod
    def of(
        history: Sequence[Event],
        gaps: Sequence[Gap],
        is_all_node_restart: Callable[[Json], bool],
        max_restart_s: float | None,
    ) -> _Restarts:
        by_index = {g.event_index: g for g in gaps}
        out = _Restarts([], set(), [], [])
        start_times = sorted((e.index, e.time) for e in nemesis_events(history) if e.f == START_FAULT)
        for w in fault_windows(history):
            if is_all_node_restart(w.start.value) or (w.stop is not None and is_all_node_restart(w.stop.value)):
                restarted = w.stop or w.start
                seconds = by_index[restarted.index].seconds
                out.seconds.append(seconds)
                out.starts.add(w.start.index)
                next_fault = next((t - restarted.time for i, t in start_times if i > restarted.index), None)
                limit = max_restart_s if max_restart_s is not None else math.inf
                if next_fault is not None and next_fault < min(limit, seconds if seconds is not None else math.inf):
                    out.interrupted.append(restarted.index)
                else:
                    out.judged.append(seconds)
        return out


def check_availability(
    history: Sequence[Event],
    *,
    write_fs: Collection[str] = DEFAULT_WRITES,
    max_gap_s: float | None = None,
    is_all_node_restart: Callable[[Json], bool] = describes_all_node_restart,
    max_failover_p99_s: float | None = None,
    max_restart_s: float | None = None,
    max_recovery_s: float | None = None,
) -> AvailabilityResult:
    writes = [op for op in as_operations(history) if op.ok and op.f in write_fs]
    gaps = [
        Gap(e.index, e.f, e.value, e.time, _first_ok_write_after(e, writes))
        for e in nemesis_events(history)
        if e.f in (START_FAULT, "stop-fault")
    ]
    restarts = _Restarts.of(history, gaps, is_all_node_restart, max_restart_s)

    def done(kind: str | None) -> list[float]:
        return [g.seconds for g in gaps if g.seconds is not None and (kind is None or g.f == kind)]

    unrecovered = [g for g in gaps if g.seconds is None]
    too_slow = [
        g
        for g in gaps
        if max_gap_s is not None and g.f == "stop-fault" and g.seconds is not None and g.seconds > max_gap_s
    ]
    failover = stats(
        [
            g.seconds
            for g in gaps
            if g.f == START_FAULT and g.seconds is not None and g.event_index not in restarts.starts
        ]
    )
    failover_too_slow = (
        failover.p99
        if max_failover_p99_s is not None and failover.p99 is not None and failover.p99 > max_failover_p99_s
        else None
    )
    slow_restarts = [r for r in restarts.judged if max_restart_s is not None and (r is None or r > max_restart_s)]
    no_restart_measured = max_restart_s is not None and bool(restarts.seconds) and not restarts.judged
    goodput = measure_goodput(history, is_all_node=is_all_node_restart)
    no_goodput_baseline = max_recovery_s is not None and bool(goodput.recoveries) and goodput.baseline is None
    slow_recoveries = (
        []
        if max_recovery_s is None or goodput.baseline is None
        else [r for r in goodput.recoveries if r.seconds is None or r.seconds > max_recovery_s]
    )
    failed = unrecovered or too_slow or failover_too_slow is not None or slow_restarts or no_restart_measured
    return AvailabilityResult(
        valid=not (failed or slow_recoveries or no_goodput_baseline),
        fault_events=len(gaps),
        after_start=stats(done(START_FAULT)),
        failover=failover,
        after_stop=stats(done("stop-fault")),
        overall=stats(done(None)),
        all_node_restart_s=restarts.seconds,
        gaps=gaps,
        unrecovered=unrecovered,
        too_slow=too_slow,
        failover_too_slow=failover_too_slow,
        slow_restarts=slow_restarts,
        interrupted_restarts=restarts.interrupted,
        no_restart_measured=no_restart_measured,
        goodput=goodput,
        slow_recoveries=slow_recoveries,
        no_goodput_baseline=no_goodput_baseline,
    )
