"""One chaos run: a cluster behind per-pair proxies, the total-queue workload, one nemesis, then every checker.

``run(scenario, seed, duration_s, out_dir)``:

1. start the Toxiproxy-compatible server, the pair proxies and ``nodes`` node processes dialling through them
   (all files under ``out_dir``: ``cluster/n1.log``, ``cluster/n1/`` ...); create the queues;
2. run the workload and the nemesis for ``duration_s`` (the last fault is held to its end, then stopped), sampling
   the leader every ~0.5 s (the id a majority of the nodes name);
3. heal the network, restart/resume every node, wait until all are ready, and keep the writers going until each has
   an ok enqueue sent after healing (the availability checker needs a write after every fault event);
4. stop the workload; poll ``/v1/cluster/digest`` on every node until all agree (each poll is a replicas sample);
5. drain every queue (after any lease an unknown receive may hold has run out);
6. check: total queue, exactly-once, linearizability (with the drain), availability, replicas, node logs,
   non-vacuity; write ``history.jsonl``, ``report.json``, ``leaders.json``, ``digests.json``; print the row.

Not built yet: the picture (throughput/latency over time with fault windows shaded) needs a plotting library.
"""

from __future__ import annotations

import contextlib
import json
import random
import signal
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from toxiproxy import Toxiproxy

from chaos.check_availability import check_availability
from chaos.check_linear import check_linearizable
from chaos.check_logs import check_logs
from chaos.check_once import check_exactly_once
from chaos.check_queue import check_total_queue
from chaos.check_replicas import check_replicas
from chaos.check_vacuity import check_vacuity
from chaos.cluster import Cluster, http_json, wait_until
from chaos.history import HistoryWriter, Json, as_operations, deliveries, read_history
from chaos.nemesis import SCENARIOS, Nemesis
from chaos.network import RaftNetwork, wire
from chaos.toxiproxy_server import ServerThread
from chaos.verdict import CheckResult, build_report, format_table
from chaos.workload import Node, Workload, drain

#: scenarios in which the leader must change at least once (the fault takes the leader away)
LEADER_CHANGING = frozenset({"kill-leader", "pause-leader", "partition-leader"})
LEASE_GRACE_S = 10.0


class LeaderSampler:
    """Every ``interval`` s: the leader id a majority of the nodes name (None if no majority names one)."""

    def __init__(self, cluster: Cluster, interval: float = 0.5) -> None:
        self.cluster = cluster
        self.interval = interval
        self.samples: list[tuple[float, str | None]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="leader-sampler", daemon=True)
        self._t0 = time.monotonic()

    def _sample(self) -> str | None:
        votes: dict[str, int] = {}
        for n in self.cluster.nodes:
            try:
                code, body = http_json(n.url + "/v1/cluster", timeout=0.3)
            except (OSError, ValueError):
                continue
            if code == 200 and isinstance(body, dict) and isinstance(body.get("leader_id"), str):
                votes[body["leader_id"]] = votes.get(body["leader_id"], 0) + 1
        need = self.cluster.size // 2 + 1
        return next((leader for leader, count in votes.items() if count >= need), None)

    def _loop(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            self.samples.append((round(started - self._t0, 3), self._sample()))
            self._stop.wait(max(0.0, self.interval - (time.monotonic() - started)))

    def __enter__(self) -> LeaderSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)

    @property
    def leaders(self) -> list[str | None]:
        return [leader for _, leader in self.samples]


def digest_samples(cluster: Cluster, timeout: float = 30.0) -> list[dict[str, dict[str, object]]]:
    """Polls every node's digest until all report one applied index and one digest; returns every sample."""
    samples: list[dict[str, dict[str, object]]] = []

    def agreed() -> bool:
        sample: dict[str, dict[str, object]] = {}
        for n in cluster.nodes:
            try:
                code, body = http_json(n.url + "/v1/cluster/digest", timeout=2.0)
            except (OSError, ValueError):
                continue
            if code == 200 and isinstance(body, dict):
                sample[n.node_id] = {"applied_index": body.get("applied_index"), "digest": body.get("digest")}
        samples.append(sample)
        values = {(s["applied_index"], s["digest"]) for s in sample.values()}
        return len(sample) == cluster.size and len(values) == 1

    with contextlib.suppress(AssertionError):  # the replicas checker reports a disagreement
        wait_until("every node to report the same digest", agreed, timeout=timeout, interval=0.2)
    return samples


def _recover(cluster: Cluster, network: RaftNetwork) -> None:
    """Heals the network and brings every node back (resumed or restarted), then waits until all are ready."""
    network.heal()
    for i, n in enumerate(cluster.nodes):
        if n.alive:
            cluster.signal(i, signal.SIGCONT)
        else:
            cluster.start(i)
    cluster.wait_ready(timeout=60)


def _create_queues(cluster: Cluster, queues: list[str]) -> None:
    for q in queues:

        def created(q: str = q) -> bool:
            code, _ = http_json(cluster.urls[0] + f"/v1/queues/{q}", "PUT", {}, timeout=5.0)
            return code in (200, 201)

        wait_until(f"queue {q} created", created, timeout=30)


def run(
    scenario: str,
    seed: int,
    duration_s: float,
    out_dir: Path,
    nodes: int = 3,
    *,
    writers: int = 3,
    consumers: int = 2,
    queue_count: int = 2,
    print_row: bool = True,
) -> dict[str, Json]:
    """Runs one scenario; returns the report (also written to ``out_dir/report.json``)."""
    if scenario not in SCENARIOS:
        raise ValueError(f"unknown scenario {scenario!r}; known: {', '.join(SCENARIOS)}")
    out_dir.mkdir(parents=True, exist_ok=True)
    history_path = out_dir / "history.jsonl"
    rng = random.Random(seed)
    queues = [f"q{i}" for i in range(queue_count)]
    leaders: list[str | None] = []
    leader_samples: list[tuple[float, str | None]] = []
    samples: list[dict[str, dict[str, object]]] = []
    with ServerThread() as server, HistoryWriter(history_path) as history:
        api = Toxiproxy()
        api.update_api_consumer(server.host, server.port)
        cluster = Cluster(out_dir / "cluster", nodes)
        network = wire(api, cluster)
        try:
            cluster.start_all()
            cluster.wait_ready(timeout=60)
            _create_queues(cluster, queues)
            targets = [Node(n.node_id, n.url) for n in cluster.nodes]
            start = time.monotonic()
            until = start + duration_s
            workload = Workload(
                history,
                targets,
                queues,
                writers=writers,
                consumers=consumers,
                lease_until=until + LEASE_GRACE_S,
            )
            nemesis = Nemesis(scenario, cluster, network, history, rng)
            cancel = threading.Event()
            with LeaderSampler(cluster) as sampler:
                workload.start()
                nemesis_thread = threading.Thread(target=nemesis.run, args=(until, cancel), name="nemesis")
                nemesis_thread.start()
                nemesis_thread.join(duration_s + 120)
                if nemesis_thread.is_alive():
                    cancel.set()
                    nemesis_thread.join(60)
                workload.stop_consumers.set()  # leases must outlive every receive's ack
                _recover(cluster, network)
                healed = time.monotonic()

                def writes_after_heal() -> bool:
                    last = workload.last_ok
                    return len(last) == writers and all(t > healed for t in last.values())

                try:
                    wait_until("an ok write from every writer after healing", writes_after_heal, timeout=30)
                finally:
                    workload.join(timeout=30)
            leaders = sampler.leaders
            leader_samples = list(sampler.samples)
            samples = digest_samples(cluster)
            drain_deadline = max(until + LEASE_GRACE_S, time.monotonic()) + 30
            for k, q in enumerate(queues):
                drain(history, writers + consumers + k, targets, q, deadline=drain_deadline)
        finally:
            cluster.close()
        log_paths = [n.log_path for n in cluster.nodes]
        node_ids = [n.node_id for n in cluster.nodes]

    events = read_history(history_path)
    # The linearizability model counts the drain as a dequeue only while no lease ran out. A receive with an unknown
    # outcome that did lease a message hides it until its lease ends; the drain then reads it as a redelivery
    # (delivery_count > 1), which no FIFO order explains either way. Then the drain is left out of that check (the
    # unknown receive may take the message at the head instead); the total-queue checker still reads the drain.
    redelivered = [
        d.body for op in as_operations(events) if op.f == "drain" for d in deliveries(op) if (d.delivery_count or 1) > 1
    ]
    results: Mapping[str, CheckResult] = {
        "queue": check_total_queue(events),
        "once": check_exactly_once(events),
        "linear": check_linearizable(events, queues, include_drain=not redelivered),
        "availability": check_availability(events),
        "replicas": check_replicas(samples, expected_nodes=node_ids),
        "logs": check_logs(log_paths),
        "vacuity": check_vacuity(
            events,
            min_ok_by_f={"enqueue": 10, "ack": 5},
            leaders=leaders,
            min_leader_changes=1 if scenario in LEADER_CHANGING else 0,
        ),
    }
    report = build_report(results, history=events, run=f"{scenario} seed={seed} {duration_s:g}s")
    report["scenario"] = {"name": scenario, "seed": seed, "duration_s": duration_s, "nodes": nodes}
    report["linear_include_drain"] = not redelivered
    report["drain_redelivered"] = list[Json](sorted(redelivered))
    _write(out_dir / "report.json", report)
    _write(out_dir / "leaders.json", [list(s) for s in leader_samples])
    _write(out_dir / "digests.json", samples)
    if print_row:
        summary = report["summary"]
        assert isinstance(summary, dict)
        print(format_table([summary]), flush=True)
    return report


def _write(path: Path, value: Any) -> None:
    path.write_text(json.dumps(value, indent=1, default=str) + "\n", encoding="utf-8")
