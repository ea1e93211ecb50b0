"""``python -m bench memory``: a node's memory with a large backlog, and how fast a node restarted with it is ready.

Starts a 3-node raft-queue cluster (temporary directory, fsync on), loads N messages with batch publishes, waits
until every node applied them and compacted its journal, then prints per node: RSS and peak RSS (from
/proc/PID/status), journal, snapshot and RocksDB sizes. Then it restarts one follower, and then every node, and
times each from the start of the process to ``/readyz`` answering 200 (leader known, caught up), and checks that
the queue still holds all N messages. Leader changes during the load are counted (a dump that stalled the tick
thread would show up as an election).
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Any

import aiohttp
import uvloop

from chaos.cluster import Cluster, http_json, running_cluster, wait_until

QUEUE = "backlog"
BATCH = 64
LOAD_IN_FLIGHT = 8
#: What the performance issue asks for.
RSS_GOAL_MIB = 300
READY_GOAL_S = 10


@dataclass(frozen=True)
class NodeFigures:
    node: str
    rss_mib: float
    peak_rss_mib: float
    journal_mib: float
    snapshot_mib: float
    rocksdb_mib: float


@dataclass(frozen=True)
class MemoryReport:
    messages: int
    body_bytes: int
    load_seconds: float
    load_msgs_per_s: float
    leader_changes_during_load: int
    nodes: list[NodeFigures]
    follower_restart_ready_s: float
    follower_rss_after_restart_mib: float
    all_nodes_restart_ready_s: float
    ready_after_restart: int


def _status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} for pid {pid}")


def _mib(path: Path) -> float:
    if path.is_file():
        return path.stat().st_size / 2**20
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 2**20
    return 0.0


def _pid(cluster: Cluster, i: int) -> int:
    proc = cluster.nodes[i].proc
    assert proc is not None
    return proc.pid


def node_figures(cluster: Cluster, i: int) -> NodeFigures:
    n, pid = cluster.nodes[i], _pid(cluster, i)
    return NodeFigures(
        node=n.node_id,
        rss_mib=round(_status_kib(pid, "VmRSS") / 1024, 1),
        peak_rss_mib=round(_status_kib(pid, "VmHWM") / 1024, 1),
        journal_mib=round(_mib(n.data_dir / "raft" / "journal"), 1),
        snapshot_mib=round(_mib(n.data_dir / "raft" / "snapshot"), 1),
        rocksdb_mib=round(_mib(n.data_dir / "state"), 1),
    )


async def _load(base: str, messages: int, body_bytes: int, cluster: Cluster) -> tuple[float, int]:
    payload = json.dumps({"messages": [{"body": "x" * body_bytes}] * BATCH}).encode()
    sent = 0
    leaders: set[tuple[int, Any]] = set()
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120)) as session:

        async def worker() -> None:
            nonlocal sent
            while sent < messages:
                sent += BATCH
                async with session.post(f"{base}/v1/queues/{QUEUE}/messages", data=payload) as r:
                    if r.status != 201:
                        raise RuntimeError(f"publish answered {r.status}: {await r.text()}")

        async def watch() -> None:
            while sent < messages:
                async with session.get(f"{base}/v1/cluster") as r:
                    st = await r.json()
                leaders.add((st["term"], st["leader_id"]))
                await asyncio.sleep(0.2)

        started = time.perf_counter()
        await asyncio.gather(watch(), *(worker() for _ in range(LOAD_IN_FLIGHT)))
        return time.perf_counter() - started, len({t for t, _ in leaders}) - 1


def _ready(cluster: Cluster, i: int) -> bool:
    try:
        return http_json(cluster.nodes[i].url + "/readyz", timeout=2.0)[0] == 200
    except OSError:
        return False


def _restart(cluster: Cluster, which: list[int]) -> float:
    for i in which:
        cluster.stop(i)
    started = time.monotonic()
    for i in which:
        cluster.start(i)
    for i in which:
        wait_until(f"{cluster.nodes[i].node_id} ready", partial(_ready, cluster, i), timeout=300, interval=0.05)
    return time.monotonic() - started


def _settled(cluster: Cluster, limit_mib: float) -> bool:
    """Every node applied everything and holds a journal below the compaction bound."""
    statuses = [cluster.status(i) for i in range(cluster.size)]
    if any(st is None for st in statuses):
        return False
    commit = max(int(st["commit_index"]) for st in statuses if st)
    caught_up = all(int(st["applied_index"]) >= commit for st in statuses if st)
    journals = [_mib(n.data_dir / "raft" / "journal") for n in cluster.nodes]
    return caught_up and max(journals) < limit_mib


def run(root: Path, messages: int, body_bytes: int, journal_mb: int) -> MemoryReport:
    args = ["--snapshot-journal-mb", str(journal_mb), "--log-level", "warning"]
    with running_cluster(root, 3, args) as cluster:
        leader = cluster.wait_for_leader()
        base = cluster.nodes[leader].url
        code, _ = http_json(f"{base}/v1/queues/{QUEUE}", "PUT", {})
        assert code in (200, 201), code
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            load_s, changes = runner.run(_load(base, messages, body_bytes, cluster))
        loaded = (messages + BATCH - 1) // BATCH * BATCH
        # The largest journal bound is the last node's (thresholds are staggered 25% apart), plus one entry.
        wait_until("every node caught up and compacted", lambda: _settled(cluster, journal_mb * 1.5 + 8), timeout=600)
        nodes = [node_figures(cluster, i) for i in range(cluster.size)]
        follower = next(i for i in range(cluster.size) if i != cluster.wait_for_leader())
        follower_s = _restart(cluster, [follower])
        follower_rss = round(_status_kib(_pid(cluster, follower), "VmRSS") / 1024, 1)
        all_s = _restart(cluster, list(range(cluster.size)))
        leader = cluster.wait_for_leader()
        _, info = http_json(f"{cluster.nodes[leader].url}/v1/queues/{QUEUE}")
        ready = int(info["counts"]["ready"])
    return MemoryReport(
        messages=loaded,
        body_bytes=body_bytes,
        load_seconds=round(load_s, 1),
        load_msgs_per_s=round(loaded / load_s, 1),
        leader_changes_during_load=changes,
        nodes=nodes,
        follower_restart_ready_s=round(follower_s, 2),
        follower_rss_after_restart_mib=follower_rss,
        all_nodes_restart_ready_s=round(all_s, 2),
        ready_after_restart=ready,
    )


def format_report(r: MemoryReport) -> str:
    lines = [
        f"{r.messages:,} messages of {r.body_bytes} bytes loaded in {r.load_seconds:g} s "
        f"({r.load_msgs_per_s:,.0f} msg/s, batches of {BATCH}, {LOAD_IN_FLIGHT} in flight); "
        f"leader changes during the load: {r.leader_changes_during_load}",
        f"{'node':<6} {'RSS MiB':>9} {'peak MiB':>9} {'journal MiB':>12} {'snapshot MiB':>13} {'RocksDB MiB':>12}",
    ]
    for n in r.nodes:
        lines.append(
            f"{n.node:<6} {n.rss_mib:>9.1f} {n.peak_rss_mib:>9.1f} {n.journal_mib:>12.1f} {n.snapshot_mib:>13.1f} "
            f"{n.rocksdb_mib:>12.1f}"
        )
    worst = max(max(n.rss_mib, n.peak_rss_mib) for n in r.nodes)
    lines += [
        f"one follower restarted: ready in {r.follower_restart_ready_s:.2f} s "
        f"(RSS after: {r.follower_rss_after_restart_mib:.1f} MiB)",
        f"every node restarted: all ready in {r.all_nodes_restart_ready_s:.2f} s; "
        f"messages still queued: {r.ready_after_restart:,}",
        f"goals: RSS < {RSS_GOAL_MIB} MiB: {'met' if worst < RSS_GOAL_MIB else 'MISSED'} (worst peak {worst:.1f}); "
        f"ready < {READY_GOAL_S} s after a restart: "
        f"{'met' if max(r.follower_restart_ready_s, r.all_nodes_restart_ready_s) < READY_GOAL_S else 'MISSED'}",
    ]
    return "\n".join(lines)


def report_json(r: MemoryReport) -> str:
    return json.dumps(asdict(r), indent=2) + "\n"
