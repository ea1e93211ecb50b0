"""One chaos run: a cluster behind per-pair proxies, two workloads, one nemesis, then every checker.

``run(scenario, seed, duration_s, out_dir)``:

1. start the Toxiproxy-compatible server, the Raft pair proxies, one client proxy per node (the workload dials
   those) and ``nodes`` node processes dialling through the pair proxies (files under ``out_dir``:
   ``cluster/n1.log``, ``cluster/n1/`` ..., or each node's data on its own loop-mounted ext4 under ``out_dir/disks``
   for the power-loss scenarios); create the queues (``q0``, ``q1``, ... for the total-queue workload, ``tsrc`` and
   ``tdst`` for the transaction workload) and enqueue the transaction workload's inputs to ``tsrc``;
2. run both workloads alone for ``LEAD_IN_S`` (the goodput baseline), then with the nemesis for ``duration_s``
   (the last fault is held to its end, then stopped), then on for ``RECOVERY_TAIL_S`` (the last fault's goodput
   recovery), sampling the leader every ~0.5 s (the id a majority of the nodes name). The total-queue workload
   (:mod:`chaos.workload`) has writers and consumers on ``q0``, ``q1``, ...; the transaction workload
   (:mod:`chaos.workload_txn`) has 1-2 transformers moving each input from ``tsrc`` to ``tdst`` in one transaction
   (ack + enqueue), paced so as not to starve the other;
3. heal the network, restart/resume every node, wait until all are ready, and keep the writers going until each has
   an ok enqueue sent after healing (the availability checker needs a write after every fault event);
4. stop the total-queue workload; let the transformers (no longer paced) run until ``tsrc`` is empty or a deadline,
   then stop them; poll ``/v1/cluster/digest`` on every node until all agree, for at most 10 s (each poll is a
   replicas sample);
5. drain every queue (after any lease an unknown receive may hold has run out): ``q0``, ``q1``, ... as ``drain``,
   then ``tsrc`` and ``tdst`` as ``txn-drain``;
6. check: total queue, exactly-once, linearizability (of ``q0``, ``q1``, ... with the drain), availability
   (failover p99 < 5 s, first ok write within 15 s of an all-node restart, and for the nemeses in
   ``GOODPUT_JUDGED`` unless ``judge_goodput`` is False, every fault's goodput back to half within 4 s), replicas,
   node logs, non-vacuity, the transactions (:mod:`chaos.check_txn`: each input transformed exactly once or left
   untouched, and some committed), and the nemesis's own problems (a node that crashed on a damaged file); write
   ``history.jsonl``, ``report.json``, ``leaders.json``, ``digests.json`` and ``history.png`` (throughput and
   latency over time, fault windows shaded, goodput recoveries marked); print the row, the goodput recoveries and
   the transaction counts.

The transaction workload uses its own ``f`` names (``txn-setup``, ``txn-receive``, ``txn``, ``txn-get``,
``txn-drain``) and process ids (100 and up), so the total-queue, exactly-once, availability and non-vacuity
checkers (which select ``enqueue``, ``receive``, ``ack`` and ``drain``) never see it, and the linearizability
checker is given the total-queue workload's queues by name.
"""

from __future__ import annotations

import contextlib
import json
import random
import signal
import threading
import time
from collections.abc import Mapping
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from toxiproxy import Toxiproxy

from chaos.check_availability import AvailabilityResult, check_availability
from chaos.check_linear import check_linearizable
from chaos.check_logs import check_logs
from chaos.check_once import check_exactly_once
from chaos.check_queue import check_total_queue
from chaos.check_replicas import check_replicas
from chaos.check_txn import TxnResult, check_txn
from chaos.check_vacuity import check_vacuity
from chaos.cluster import Cluster, http_json, wait_until
from chaos.disk import LoopDisk, unavailable_reason
from chaos.goodput import BUCKET_S, describe
from chaos.history import Event, HistoryWriter, Json, read_history
from chaos.nemesis import LEADER_CHANGING, POWER_LOSS, SCENARIOS, Nemesis, Targets
from chaos.network import ClientProxies, RaftNetwork, wire
from chaos.plot import plot_history
from chaos.toxiproxy_server import ServerThread
from chaos.verdict import CheckResult, build_report, format_table
from chaos.workload import Node, Workload, drain
from chaos.workload_txn import QUEUES as TXN_QUEUES
from chaos.workload_txn import SOURCE as TXN_SOURCE
from chaos.workload_txn import TARGET as TXN_TARGET
from chaos.workload_txn import TxnWorkload

LEASE_GRACE_S = 10.0
#: the pass criteria: failover p99 under 5 s, a first ok write within 15 s of an all-node restart, replicas
#: identical within 10 s of healing
FAILOVER_P99_S = 5.0
RESTART_WRITE_S = 15.0
REPLICAS_AGREE_S = 10.0
#: the goodput criterion (chaos.goodput): ok operations per 0.5 s back to half their pre-fault median within 4 s of
#: each fault's start (an election plus slack; all-node faults from their end), for the partition, pause and kill
#: nemeses. JUDGE_GOODPUT is the one switch: False reports the recovery times without judging them.
GOODPUT_RECOVERY_S = 4.0
JUDGE_GOODPUT = True
GOODPUT_JUDGED = frozenset(
    {
        *("kill-node", "kill-leader", "kill-minority", "kill-all", "pause-leader"),
        *("partition-leader", "isolate-follower", "majority-minority", "one-way-leader", "client-cut-leader"),
    }
)
#: the workload runs alone this long before the first fault (the goodput baseline: a warm-up and a few buckets),
#: and on for RECOVERY_TAIL_S after the last fault stops, so that its recovery can be measured
LEAD_IN_S = 2.0
RECOVERY_TAIL_S = GOODPUT_RECOVERY_S + BUCKET_S
#: the transaction workload: transactions per second at most (all transformers together, during the faults), and
#: inputs per second of the run's duration (so that, unhindered, they would last about the whole run)
TXN_RATE_PER_S = 15.0
TXN_INPUTS_PER_S = 15.0
TXN_MIN_INPUTS = 60
#: after healing, how long the transformers may take to empty the source queue
TXN_FINISH_S = 60.0


@dataclass(frozen=True)
class NemesisResult:
    """Whether every fault ended as it must (e.g. a node refused damaged files rather than crash)."""

    valid: bool
    faults: int
    problems: list[str]


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


def digest_samples(cluster: Cluster, timeout: float = REPLICAS_AGREE_S) -> list[dict[str, dict[str, object]]]:
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


def _disks(out_dir: Path, nodes: int, stack: ExitStack) -> list[LoopDisk]:
    """One loop-mounted ext4 per node, destroyed when ``stack`` closes (after the cluster is stopped)."""
    reason = unavailable_reason()
    if reason is not None:
        raise RuntimeError(f"the power-loss scenarios cannot run here: {reason}")
    (out_dir / "disks").mkdir(exist_ok=True)
    disks: list[LoopDisk] = []
    for i in range(nodes):
        disk = LoopDisk(out_dir / "disks" / f"n{i + 1}.img", out_dir / "disks" / f"n{i + 1}")
        stack.callback(disk.destroy)
        disk.create()
        disks.append(disk)
    return disks


@dataclass(frozen=True)
class _Load:
    """The clients of a run: the total-queue workload's writers, consumers and queues, and the transformers."""

    writers: int
    consumers: int
    queues: list[str]
    transformers: int


@dataclass(frozen=True)
class _Rig:
    """What a run drives: the history being written, the cluster behind its proxies, and where clients send."""

    history: HistoryWriter
    cluster: Cluster
    network: RaftNetwork
    #: what the nemesis acts on (and the log lines its faults make expected)
    faults: Targets
    #: the nodes as the clients reach them: through the per-node client proxies
    targets: list[Node]


@dataclass(frozen=True)
class _Observed:
    """What a run saw besides its history, for the checkers."""

    nemesis: Nemesis
    leaders: list[str | None]
    leader_samples: list[tuple[float, str | None]]
    digests: list[dict[str, dict[str, object]]]
    log_paths: list[Path]
    node_ids: list[str]


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
    transformers: int = 2,
    print_row: bool = True,
    judge_goodput: bool = JUDGE_GOODPUT,
) -> dict[str, Json]:
    """Runs one scenario; returns the report (also written to ``out_dir/report.json``)."""
    if scenario not in SCENARIOS:
        raise ValueError(f"unknown scenario {scenario!r}; known: {', '.join(SCENARIOS)}")
    out_dir.mkdir(parents=True, exist_ok=True)
    load = _Load(writers, consumers, [f"q{i}" for i in range(queue_count)], transformers)
    with ExitStack() as stack:
        rig = _build(stack, scenario, out_dir, nodes=nodes, queues=load.queues, rng=random.Random(seed))
        observed = _exercise(rig, scenario, duration_s, load)
    events = read_history(out_dir / "history.jsonl")
    judged = judge_goodput and scenario in GOODPUT_JUDGED
    results = _check(events, scenario, load.queues, rig.faults, observed, judge_goodput=judged)
    report = build_report(results, history=events, run=f"{scenario} seed={seed} {duration_s:g}s")
    report["scenario"] = {
        "name": scenario,
        "seed": seed,
        "duration_s": duration_s,
        "nodes": nodes,
        "goodput_judged": judged,
    }
    _write(out_dir / "report.json", report)
    _write(out_dir / "leaders.json", [list(s) for s in observed.leader_samples])
    _write(out_dir / "digests.json", observed.digests)
    plot_history(events, out_dir / "history.png", title=f"{scenario} seed={seed} {duration_s:g}s {nodes} nodes")
    if print_row:
        _print_row(report, results)
    return report


def _build(
    stack: ExitStack, scenario: str, out_dir: Path, *, nodes: int, queues: list[str], rng: random.Random
) -> _Rig:
    """Step 1 up to the queues: the proxies, the nodes (ready), the queues; all closed by ``stack``."""
    server = stack.enter_context(ServerThread())
    history = stack.enter_context(HistoryWriter(out_dir / "history.jsonl"))
    disks = _disks(out_dir, nodes, stack) if scenario in POWER_LOSS else None
    api = Toxiproxy()
    api.update_api_consumer(server.host, server.port)
    cluster = Cluster(
        out_dir / "cluster",
        nodes,
        # frequent snapshots, so that snapshot transfer and damaged snapshot files are exercised too
        extra_args=["--snapshot-every-entries", "200", "--snapshot-min-interval-s", "1"],
        data_dirs=[d.mountpoint / "data" for d in disks] if disks else None,
    )
    stack.callback(cluster.close)
    network = wire(api, cluster)
    clients = ClientProxies(api)
    client_urls = clients.setup({n.node_id: f"127.0.0.1:{n.http_port}" for n in cluster.nodes})
    faults = Targets(cluster, network, clients, rng, disks)
    cluster.start_all()
    cluster.wait_ready(timeout=60)
    _create_queues(cluster, [*queues, *TXN_QUEUES])
    targets = [Node(n.node_id, client_urls[n.node_id]) for n in cluster.nodes]
    return _Rig(history, cluster, network, faults, targets)


def _exercise(rig: _Rig, scenario: str, duration_s: float, load: _Load) -> _Observed:
    """Steps 1 (the transaction inputs) to 5: the workloads under the nemesis, healing, the digests, the drains."""
    txn = TxnWorkload(
        rig.history,
        rig.targets,
        inputs=max(TXN_MIN_INPUTS, round(duration_s * TXN_INPUTS_PER_S)),
        transformers=load.transformers,
        max_rate_per_s=TXN_RATE_PER_S,
    )
    txn.setup(deadline=time.monotonic() + 60)
    until = time.monotonic() + LEAD_IN_S + duration_s
    workload = Workload(
        rig.history,
        rig.targets,
        load.queues,
        writers=load.writers,
        consumers=load.consumers,
        lease_until=until + RECOVERY_TAIL_S + LEASE_GRACE_S,
    )
    nemesis = Nemesis(scenario, rig.faults, rig.history)
    with LeaderSampler(rig.cluster) as sampler:
        _under_faults(rig, workload, txn, nemesis, until=until, duration_s=duration_s)
    digests = digest_samples(rig.cluster)
    drain_deadline = max(until + LEASE_GRACE_S, time.monotonic()) + 30
    for k, q in enumerate(load.queues):
        drain(rig.history, load.writers + load.consumers + k, rig.targets, q, deadline=drain_deadline)
    txn.drain(deadline=max(drain_deadline, time.monotonic() + 30))
    nodes = rig.cluster.nodes
    return _Observed(
        nemesis,
        sampler.leaders,
        list(sampler.samples),
        digests,
        [n.log_path for n in nodes],
        [n.node_id for n in nodes],
    )


def _under_faults(
    rig: _Rig, workload: Workload, txn: TxnWorkload, nemesis: Nemesis, *, until: float, duration_s: float
) -> None:
    """Steps 2 to 4: both workloads, alone for LEAD_IN_S, then with the nemesis until ``until`` and on for
    RECOVERY_TAIL_S after its last fault, then healing, a write from every writer after it, and the transformers'
    last run."""
    cancel = threading.Event()
    workload.start()
    txn.start()
    cancel.wait(LEAD_IN_S)
    nemesis_thread = threading.Thread(target=nemesis.run, args=(until, cancel), name="nemesis")
    nemesis_thread.start()
    nemesis_thread.join(duration_s + 120)
    if nemesis_thread.is_alive():
        cancel.set()
        nemesis_thread.join(60)
    cancel.wait(RECOVERY_TAIL_S)
    workload.stop_consumers.set()  # leases must outlive every receive's ack
    _recover(rig.cluster, rig.network)
    healed = time.monotonic()

    def writes_after_heal() -> bool:
        last = workload.last_ok
        return len(last) == workload.writers and all(t > healed for t in last.values())

    try:
        wait_until("an ok write from every writer after healing", writes_after_heal, timeout=30)
    finally:
        workload.join(timeout=30)
        txn.finish(deadline=time.monotonic() + TXN_FINISH_S)


def _check(
    events: list[Event], scenario: str, queues: list[str], faults: Targets, observed: _Observed, *, judge_goodput: bool
) -> dict[str, CheckResult]:
    """Step 6: every checker."""
    nemesis = observed.nemesis
    availability = check_availability(
        events,
        max_failover_p99_s=FAILOVER_P99_S,
        max_restart_s=RESTART_WRITE_S,
        max_recovery_s=GOODPUT_RECOVERY_S if judge_goodput else None,
    )
    return {
        "queue": check_total_queue(events),
        "once": check_exactly_once(events),
        "linear": check_linearizable(events, queues, include_drain=True),
        "availability": availability,
        "replicas": check_replicas(observed.digests, expected_nodes=observed.node_ids),
        "logs": check_logs(observed.log_paths, expected=faults.expected_log_lines),
        "vacuity": check_vacuity(
            events,
            min_ok_by_f={"enqueue": 10, "ack": 5},
            leaders=observed.leaders,
            min_leader_changes=1 if scenario in LEADER_CHANGING else 0,
        ),
        "txn": check_txn(events, source=TXN_SOURCE, target=TXN_TARGET),
        "nemesis": NemesisResult(not nemesis.problems, nemesis.faults, list(nemesis.problems)),
    }


def _print_row(report: dict[str, Json], results: Mapping[str, CheckResult]) -> None:
    summary = report["summary"]
    assert isinstance(summary, dict)
    print(format_table([summary]), flush=True)
    a = results["availability"]
    assert isinstance(a, AvailabilityResult) and a.goodput is not None
    g = a.goodput
    print(
        f"goodput: baseline {g.baseline} ok per {g.bucket_s:g} s ({g.baseline_buckets} buckets); recovery to half: "
        + ", ".join(f"{r.fault_id} {describe(r)}" for r in g.recoveries),
        flush=True,
    )
    t = results["txn"]
    assert isinstance(t, TxnResult)
    print(
        f"txn: {t.inputs} inputs, {t.committed} committed ({t.transformed} transformed, {t.untransformed} left), "
        f"{t.duplicates_answered} duplicates answered, {t.aborted} aborted, {t.conflicts} conflicts, "
        f"{t.unknown_outcomes} unknown outcomes, {t.missing_count} missing, {t.duplicated_count} duplicated: "
        + ("valid" if t.valid else "INVALID " + "; ".join(t.problems)),
        flush=True,
    )


def _write(path: Path, value: Any) -> None:
    path.write_text(json.dumps(value, indent=1, default=str) + "\n", encoding="utf-8")
