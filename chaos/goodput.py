"""Goodput per fault: how long after each fault the clients' ok operations are back to half their pre-fault rate.

The first ok write after a fault (:mod:`chaos.check_availability`'s failover time) says the cluster answers again;
it does not say the clients get their work done. A leader cut off from its peers that keeps taking requests it
cannot commit, or a node that holds each request to its timeout, lets one write through while the others wait.
This module measures the rate instead.

**Buckets.** Ok completions of the total-queue workload's operations (``enqueue``, ``receive``, ``ack``) are counted
per :data:`BUCKET_S` (0.5 s). Only whole buckets count: a bucket cut off by the end of the history or by the first
fault is not compared with anything. A bucket with no operation counts 0 (it is not skipped).

**Baseline.** The median count of the whole buckets from :data:`WARMUP_S` after the workload's first invoke up to
the first ``start-fault`` (the buckets are laid from that warmed-up time). No whole bucket, or a median of 0 (the
clients got nothing done before any fault), is *no baseline*: no recovery can be measured.

**Recovery.** For each fault window (:func:`chaos.history.fault_windows`), buckets are laid from the fault's start
(from its stop for an all-node fault, which no write can outlast; from its start if it never stopped) and the
recovery time is the end of the first whole bucket whose count reaches :data:`RECOVERY_FRACTION` of the baseline:
an upper bound at 0.5 s resolution (a fault that slowed nothing recovers in 0.5 s). Counted in those buckets are
the ok operations *invoked after the fault started* (higher ``index``): one sent before it may have committed
before it, so it proves nothing. The search runs to the end of the history, across later faults: a cluster that
was not back before the next fault was not back. ``None``: never recovered, or no baseline.

:func:`chaos.check_availability.check_availability` judges the times (``max_recovery_s``, 4 s in the runner: an
election plus slack); the picture (:mod:`chaos.plot`) marks them.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass

from chaos.history import START_FAULT, Event, FaultWindow, Json, as_operations, fault_windows, nemesis_events

BUCKET_S = 0.5
WARMUP_S = 0.5
RECOVERY_FRACTION = 0.5
GOODPUT_FS: frozenset[str] = frozenset({"enqueue", "receive", "ack"})
#: float slack for bucket edges (times are recorded to the microsecond)
_EPS = 1e-9


@dataclass(frozen=True)
class Recovery:
    """One fault window's goodput recovery."""

    #: the start-fault's event index and its description's ``id`` and ``kind`` (None if it has none)
    event_index: int
    fault_id: Json
    kind: Json
    start: float
    stop: float | None
    #: all-node fault: measured from its stop
    all_nodes: bool
    measured_from: float
    #: the ok operations per bucket it had to reach (None: no baseline)
    threshold: float | None
    #: seconds from ``measured_from`` to the end of the first bucket at or above the threshold; None: never, or no
    #: baseline
    seconds: float | None


@dataclass(frozen=True)
class Goodput:
    bucket_s: float
    #: median ok operations per bucket before the first fault; None: no baseline (see the module docstring)
    baseline: float | None
    baseline_buckets: int
    #: RECOVERY_FRACTION of the baseline
    threshold: float | None
    recoveries: list[Recovery]


def bucket_counts(times: Sequence[float], origin: float, end: float, bucket_s: float = BUCKET_S) -> list[int]:
    """How many of ``times`` fall in each whole bucket ``[origin + k b, origin + (k + 1) b)`` ending by ``end``."""
    n = max(0, math.floor((end - origin) / bucket_s + _EPS))
    counts = [0] * n
    for t in times:
        k = math.floor((t - origin) / bucket_s + _EPS)
        if 0 <= k < n:
            counts[k] += 1
    return counts


def first_recovered(counts: Sequence[int], threshold: float, bucket_s: float = BUCKET_S) -> float | None:
    """The end (seconds from the origin) of the first bucket with at least ``threshold``; None if none has."""
    k = next((i for i, c in enumerate(counts) if c >= threshold - _EPS), None)
    return None if k is None else round((k + 1) * bucket_s, 6)


def _baseline(
    ok_times: Sequence[float], first_invoke: float | None, first_fault: float, bucket_s: float, warmup_s: float
) -> tuple[float | None, int]:
    if first_invoke is None:
        return None, 0
    counts = bucket_counts(ok_times, first_invoke + warmup_s, first_fault, bucket_s)
    if not counts:
        return None, 0
    median = float(statistics.median(counts))
    return (median if median > 0 else None), len(counts)


def _recovery(
    window: FaultWindow,
    ok: Sequence[tuple[int, float]],
    *,
    end: float,
    threshold: float | None,
    all_nodes: bool,
    bucket_s: float,
) -> Recovery:
    start, stop = window.start, window.stop
    value = start.value
    origin = stop.time if all_nodes and stop is not None else start.time
    seconds: float | None = None
    if threshold is not None:
        times = [t for index, t in ok if index > start.index]
        seconds = first_recovered(bucket_counts(times, origin, end, bucket_s), threshold, bucket_s)
    return Recovery(
        event_index=start.index,
        fault_id=value.get("id") if isinstance(value, dict) else None,
        kind=value.get("kind") if isinstance(value, dict) else value,
        start=start.time,
        stop=stop.time if stop is not None else None,
        all_nodes=all_nodes,
        measured_from=origin,
        threshold=threshold,
        seconds=seconds,
    )


def measure_goodput(
    history: Sequence[Event],
    *,
    is_all_node: Callable[[Json], bool],
    fs: Collection[str] = GOODPUT_FS,
    bucket_s: float = BUCKET_S,
    warmup_s: float = WARMUP_S,
    fraction: float = RECOVERY_FRACTION,
) -> Goodput:
    """The baseline and every fault window's recovery (see the module docstring). ``is_all_node`` tells an all-node
    fault from its start or stop description."""
    ops = [op for op in as_operations(history) if op.f in fs]
    ok = [(op.invoke.index, op.completion.time) for op in ops if op.ok and op.completion is not None]
    end = max((e.time for e in history), default=0.0)
    first_invoke = min((op.invoke.time for op in ops), default=None)
    first_fault = min((e.time for e in nemesis_events(history) if e.f == START_FAULT), default=end)
    baseline, n = _baseline([t for _, t in ok], first_invoke, first_fault, bucket_s, warmup_s)
    threshold = None if baseline is None else fraction * baseline
    recoveries = [
        _recovery(
            w,
            ok,
            end=end,
            threshold=threshold,
            all_nodes=is_all_node(w.start.value) or (w.stop is not None and is_all_node(w.stop.value)),
            bucket_s=bucket_s,
        )
        for w in fault_windows(history)
    ]
    return Goodput(bucket_s, baseline, n, threshold, recoveries)


def describe(recovery: Recovery) -> str:
    """``"2.5 s"``, ``"never"`` or ``"no baseline"``, for tables and the picture."""
    if recovery.threshold is None:
        return "no baseline"
    return "never" if recovery.seconds is None else f"{recovery.seconds:g} s"
