"""The race's table: one row per workload, each system's msgs/s, p50 and p99, ours/peer ratios, and the goals."""

from __future__ import annotations

from dataclasses import dataclass

from bench.harness import Measurement

OURS = "raft-queue"


@dataclass(frozen=True)
class Goal:
    text: str
    measured: str
    met: bool | None  # None: a system it compares with did not run


def _find(results: list[Measurement], system: str, workload: str, in_flight: int | None = None) -> Measurement | None:
    for r in results:
        if r.system == system and r.workload.startswith(workload) and (in_flight is None or r.in_flight == in_flight):
            return r
    return None


def _ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}x" if b > 0 else "-"


def table(results: list[Measurement], systems: list[str]) -> str:
    rows: list[tuple[str, int]] = []
    for r in results:
        if (r.workload, r.in_flight) not in rows:
            rows.append((r.workload, r.in_flight))
    peers = [s for s in systems if s != OURS]
    head = [f"{'workload':<28} {'in flight':>9}"]
    for s in systems:
        head.append(f"{s + ' msgs/s':>22} {'p50 ms':>8} {'p99 ms':>8}")
    if OURS in systems:
        head.extend(f"{'ours/' + p:>15}" for p in peers)
    lines = [" ".join(head)]
    for workload, n in rows:
        cells = [f"{workload:<28} {n:>9}"]
        by = {s: _find(results, s, workload, n) for s in systems}
        for s in systems:
            m = by[s]
            cells.append(
                f"{m.msgs_per_s:>22.1f} {m.p50_ms:>8.2f} {m.p99_ms:>8.2f}" if m else f"{'-':>22} {'-':>8} {'-':>8}"
            )
        ours = by.get(OURS)
        if ours is not None:
            for p in peers:
                peer = by[p]
                cells.append(f"{_ratio(ours.msgs_per_s, peer.msgs_per_s) if peer else '-':>15}")
        lines.append(" ".join(cells))
    return "\n".join(lines)


def goals(results: list[Measurement]) -> list[Goal]:
    """The performance issue's goals, as ratios measured in this run."""
    ours64 = _find(results, OURS, "publish", 64)
    rabbit64 = _find(results, "rabbitmq", "publish", 64)
    ours1 = _find(results, OURS, "publish", 1)
    rabbit1 = _find(results, "rabbitmq", "publish", 1)
    batch = _find(results, OURS, "batch publish")
    nats_single = [r for r in results if r.system == "nats" and r.workload == "publish"]
    nats_best = max(nats_single, key=lambda r: r.msgs_per_s) if nats_single else None
    ours_c = _find(results, OURS, "consume")
    rabbit_c = _find(results, "rabbitmq", "consume")
    out: list[Goal] = []
    if ours64 and rabbit64:
        r = ours64.msgs_per_s / rabbit64.msgs_per_s
        out.append(Goal("publish, 64 in flight: >= 2x RabbitMQ msgs/s", f"{r:.2f}x", r >= 2))
        out.append(
            Goal(
                "publish, 64 in flight: p99 <= RabbitMQ's",
                f"{ours64.p99_ms:.1f} ms vs {rabbit64.p99_ms:.1f} ms",
                ours64.p99_ms <= rabbit64.p99_ms,
            )
        )
    if ours1 and rabbit1:
        out.append(
            Goal(
                "publish, 1 in flight: p50 <= RabbitMQ's",
                f"{ours1.p50_ms:.2f} ms vs {rabbit1.p50_ms:.2f} ms",
                ours1.p50_ms <= rabbit1.p50_ms,
            )
        )
    if batch and nats_best:
        r = batch.msgs_per_s / nats_best.msgs_per_s
        out.append(
            Goal(
                f"batch publish: >= 3x NATS single-message publish (its best, {nats_best.in_flight} in flight)",
                f"{r:.2f}x",
                r >= 3,
            )
        )
    if ours_c and rabbit_c:
        r = ours_c.msgs_per_s / rabbit_c.msgs_per_s
        out.append(Goal("consume + ack of a backlog: >= 2.5x RabbitMQ", f"{r:.2f}x", r >= 2.5))
    return out


def format_goals(items: list[Goal]) -> str:
    return "\n".join(f"  [{'met' if g.met else 'MISSED'}] {g.text}: {g.measured}" for g in items)
