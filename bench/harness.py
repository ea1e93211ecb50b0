"""The one client harness every system runs through: a closed loop with N operations in flight, and a drain.

A closed loop keeps exactly ``in_flight`` operations outstanding for ``seconds`` (after a warm-up whose results
are dropped) and times each one from its start to its confirmation. ``drain`` runs consumers until a backlog of
known size is gone. Both count messages, not requests, so a batch of 64 counts 64. A ``Measurement`` is one
workload's figures, the one result type of every benchmark here (the race and ``python -m bench solo``).
"""

from __future__ import annotations

import asyncio
import math
import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Measurement:
    system: str
    workload: str
    in_flight: int
    messages: int
    seconds: float
    msgs_per_s: float
    p50_ms: float
    p99_ms: float


def percentile(values: list[float], q: float) -> float:
    """The nearest-rank ``q`` quantile (0 < q <= 1) of ``values``; 0.0 when empty."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered), max(1, math.ceil(q * len(ordered)))) - 1]


def measurement(
    system: str, workload: str, in_flight: int, *, messages: int, seconds: float, lat: list[float]
) -> Measurement:
    return Measurement(
        system=system,
        workload=workload,
        in_flight=in_flight,
        messages=messages,
        seconds=round(seconds, 3),
        msgs_per_s=round(messages / seconds, 1) if seconds > 0 else 0.0,
        p50_ms=round(statistics.median(lat) * 1000, 2) if lat else 0.0,
        p99_ms=round(percentile(lat, 0.99) * 1000, 2),
    )


Op = Callable[[], Awaitable[int]]
"""One operation: resolves to the number of messages it confirmed (or consumed) once it is done."""


async def closed_loop(op: Op, *, in_flight: int, seconds: float) -> tuple[int, float, list[float]]:
    """Runs ``op`` with ``in_flight`` copies outstanding until ``seconds`` passed: (messages, elapsed, latencies)."""
    latencies: list[float] = []
    messages = 0
    loop = asyncio.get_running_loop()
    stop_at = loop.time() + seconds

    async def worker() -> None:
        nonlocal messages
        while loop.time() < stop_at:
            t0 = time.perf_counter()
            n = await op()
            latencies.append(time.perf_counter() - t0)
            messages += n

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(in_flight)))
    return messages, time.perf_counter() - started, latencies


async def timed(op: Op, *, in_flight: int, seconds: float, warmup: float) -> tuple[int, float, list[float]]:
    """``closed_loop`` after a warm-up of ``warmup`` seconds whose results are dropped."""
    if warmup > 0:
        await closed_loop(op, in_flight=in_flight, seconds=warmup)
    return await closed_loop(op, in_flight=in_flight, seconds=seconds)


async def drain(takes: list[Op], *, total: int, timeout: float) -> tuple[int, float, list[float]]:
    """One loop per ``take`` (one per consumer) until ``total`` messages were consumed (or ``timeout`` passed)."""
    latencies: list[float] = []
    consumed = 0
    loop = asyncio.get_running_loop()
    give_up = loop.time() + timeout

    async def consumer(take: Op) -> None:
        nonlocal consumed
        while consumed < total and loop.time() < give_up:
            t0 = time.perf_counter()
            n = await take()
            if n:
                latencies.append(time.perf_counter() - t0)
                consumed += n

    started = time.perf_counter()
    await asyncio.gather(*(consumer(take) for take in takes))
    return consumed, time.perf_counter() - started, latencies
