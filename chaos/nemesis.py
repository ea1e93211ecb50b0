"""Nemeses: faults injected from outside, each recorded as a start-fault / stop-fault pair with one ``id``.

Processes:
- ``kill-node`` / ``kill-leader`` / ``kill-minority`` / ``kill-all``: kill -9, restart when the fault stops (the
  all-node ones are described so that :func:`chaos.check_availability.describes_all_node_restart` recognises them).
- ``pause-leader``: SIGSTOP the leader for longer than the longest election timeout (1.2 s by default); SIGCONT.

Network (through the proxies of :mod:`chaos.network`):
- ``partition-leader`` / ``isolate-follower``: cut one node off from every other node; heal.
- ``majority-minority``: cut the nodes into a random minority and majority; heal.
- ``one-way-leader``: drop only what the leader sends to the others (it still hears them); heal.
- ``client-cut-leader``: the clients' link to the leader becomes a blackhole; the nodes still talk; heal.
- ``slow-network`` / ``bandwidth`` / ``reset-peer``: latency with jitter, a bandwidth cap, or connections reset
  after a random time, on every Raft link; heal.

Disks (each node's data on its own loop-mounted ext4, :mod:`chaos.disk`):
- ``power-loss-one`` / ``power-loss-minority`` / ``power-loss-all``: ``FS_IOC_SHUTDOWN`` without a log flush (what
  a power cut leaves on disk), kill -9, then unmount, mount and restart when the fault stops.
- ``corrupt-minority``: kill -9 a minority, then flip a byte in, or cut the tail of, its journal or snapshot. On
  restart a node must either repair itself (a damaged last record is an unacknowledged torn write) or refuse to
  start with a one-line error (exit 3; 78 for a damaged snapshot). A refused node is re-seeded as the operator
  guide says (its data directory wiped, then started: it rejoins from its peers). Anything else, such as a crash
  with another exit code or a node neither ready nor stopped, is recorded in :attr:`Nemesis.problems`.

A seeded :class:`random.Random` chooses the quiet and fault durations, the victims among the followers or the
minority, and the corruption, so a seed replays the same schedule (the leader is whoever the cluster elected).
"""

from __future__ import annotations

import random
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from chaos.cluster import Cluster, http_json
from chaos.disk import LoopDisk
from chaos.history import HistoryWriter, Json
from chaos.network import ClientProxies, RaftNetwork

Undo = Callable[[], dict[str, Json]]

POWER_LOSS = ("power-loss-one", "power-loss-minority", "power-loss-all")
#: exit codes of a node that refuses to serve damaged files (raft_queue's StartupRefused and damaged snapshot)
REFUSAL_EXIT_CODES = frozenset({3, 78})


@dataclass(frozen=True)
class Fault:
    description: dict[str, Json]
    inject: Callable[[], None]
    undo: Undo


@dataclass
class Targets:
    """What a nemesis can act on."""

    cluster: Cluster
    network: RaftNetwork
    clients: ClientProxies
    rng: random.Random
    disks: list[LoopDisk] | None = None
    problems: list[str] = field(default_factory=list)
    #: log lines a fault caused on purpose (a node's refusal to start on a damaged file)
    expected_log_lines: list[str] = field(default_factory=list)

    def leader(self) -> int | None:
        try:
            return self.cluster.wait_for_leader(timeout=5.0)
        except AssertionError:
            return None

    def node_id(self, i: int) -> str:
        return self.cluster.nodes[i].node_id

    def minority(self) -> list[int]:
        return sorted(self.rng.sample(range(self.cluster.size), (self.cluster.size - 1) // 2))

    def restart(self, indexes: list[int]) -> None:
        for i in indexes:
            if not self.cluster.nodes[i].alive:
                self.cluster.start(i)


FaultMaker = Callable[[Targets, str], Fault | None]


# -- processes -------------------------------------------------------------------------------------------------


def _kill(t: Targets, fid: str, victims: list[int], kind: str, **extra: Json) -> Fault:
    ids: list[Json] = [t.node_id(i) for i in victims]

    def inject() -> None:
        for i in victims:
            t.cluster.kill(i)

    def undo() -> dict[str, Json]:
        t.restart(victims)
        return {"id": fid, "kind": "restart", "nodes": ids, **extra}

    return Fault({"id": fid, "kind": kind, "nodes": ids, **extra}, inject, undo)


def kill_node(t: Targets, fid: str) -> Fault:
    return _kill(t, fid, [t.rng.randrange(t.cluster.size)], "kill")


def kill_leader(t: Targets, fid: str) -> Fault | None:
    leader = t.leader()
    return None if leader is None else _kill(t, fid, [leader], "kill-leader")


def kill_minority(t: Targets, fid: str) -> Fault:
    return _kill(t, fid, t.minority(), "kill-minority")


def kill_all(t: Targets, fid: str) -> Fault:
    fault = _kill(t, fid, list(range(t.cluster.size)), "kill-all", all_nodes=True)
    description = {**fault.description, "description": "kill -9 every node, then restart all nodes"}
    return Fault(description, fault.inject, fault.undo)


def pause_leader(t: Targets, fid: str) -> Fault | None:
    leader = t.leader()
    if leader is None:
        return None
    node = t.node_id(leader)

    def undo() -> dict[str, Json]:
        t.cluster.signal(leader, signal.SIGCONT)
        return {"id": fid, "kind": "resume", "node": node}

    return Fault(
        {"id": fid, "kind": "pause-leader", "node": node}, lambda: t.cluster.signal(leader, signal.SIGSTOP), undo
    )


# -- network ---------------------------------------------------------------------------------------------------


def _network_fault(t: Targets, fid: str, description: dict[str, Json], inject: Callable[[], None]) -> Fault:
    def undo() -> dict[str, Json]:
        t.network.heal()
        return {"id": fid, "kind": "heal"}

    return Fault({"id": fid, **description}, inject, undo)


def partition_leader(t: Targets, fid: str) -> Fault | None:
    leader = t.leader()
    if leader is None:
        return None
    node = t.node_id(leader)
    return _network_fault(t, fid, {"kind": "partition-leader", "node": node}, lambda: t.network.isolate(node))


def isolate_follower(t: Targets, fid: str) -> Fault | None:
    leader = t.leader()
    if leader is None:
        return None
    node = t.node_id(t.rng.choice([i for i in range(t.cluster.size) if i != leader]))
    return _network_fault(t, fid, {"kind": "isolate-follower", "node": node}, lambda: t.network.isolate(node))


def majority_minority(t: Targets, fid: str) -> Fault:
    minority = [t.node_id(i) for i in t.minority()]
    majority = [t.node_id(i) for i in range(t.cluster.size) if t.node_id(i) not in minority]
    sides: list[Json] = [list[Json](minority), list[Json](majority)]
    return _network_fault(
        t,
        fid,
        {"kind": "partition", "minority": sides[0], "majority": sides[1]},
        lambda: t.network.partition([minority, majority]),
    )


def one_way_leader(t: Targets, fid: str) -> Fault | None:
    leader = t.leader()
    if leader is None:
        return None
    node = t.node_id(leader)

    def inject() -> None:
        for i in range(t.cluster.size):
            if i != leader:
                t.network.cut(node, t.node_id(i), one_way=True)

    return _network_fault(t, fid, {"kind": "one-way-leader", "node": node, "direction": "outbound"}, inject)


def client_cut_leader(t: Targets, fid: str) -> Fault | None:
    leader = t.leader()
    if leader is None:
        return None
    node = t.node_id(leader)
    return _network_fault(t, fid, {"kind": "client-cut", "node": node}, lambda: t.clients.cut(node))


def slow_network(t: Targets, fid: str) -> Fault:
    latency = t.rng.choice([20, 50, 100])
    attributes = {"latency": latency, "jitter": latency // 2}
    return _network_fault(t, fid, {"kind": "latency", **attributes}, lambda: t.network.degrade("latency", attributes))


def bandwidth(t: Targets, fid: str) -> Fault:
    rate = t.rng.choice([16, 64, 256])  # KB/s per stream
    return _network_fault(
        t, fid, {"kind": "bandwidth", "rate_kb_s": rate}, lambda: t.network.degrade("bandwidth", {"rate": rate})
    )


def reset_peer(t: Targets, fid: str) -> Fault:
    after_ms = t.rng.randint(50, 500)
    return _network_fault(
        t,
        fid,
        {"kind": "reset-peer", "after_ms": after_ms},
        lambda: t.network.degrade("reset_peer", {"timeout": after_ms}),
    )


# -- disks -----------------------------------------------------------------------------------------------------


def _power_loss(t: Targets, fid: str, victims: list[int], kind: str, **extra: Json) -> Fault:
    disks = t.disks
    if disks is None:
        raise RuntimeError(f"{kind} needs each node's data on a loop disk (the runner mounts them for it)")
    ids: list[Json] = [t.node_id(i) for i in victims]

    def inject() -> None:
        fds = [disks[i].open_for_shutdown() for i in victims]
        # A process does not outlive its machine's power: freeze the victims first, so that none of them runs
        # on (and reports I/O errors from) a disk that is already gone, then cut every disk at once, then kill.
        # SIGSTOP takes effect asynchronously: wait until every thread is stopped (a chaos smoke once had a node
        # log the EIO of a RocksDB write made after the cut, a few milliseconds after its SIGSTOP was sent).
        for i in victims:
            t.cluster.freeze(i)
        for fd in fds:
            LoopDisk.cut_power(fd)
        for i in victims:
            t.cluster.kill(i)

    def undo() -> dict[str, Json]:
        for i in victims:
            disks[i].unmount()
            disks[i].mount()
        t.restart(victims)
        return {"id": fid, "kind": "power-restored", "nodes": ids, **extra}

    return Fault({"id": fid, "kind": kind, "nodes": ids, **extra}, inject, undo)


def power_loss_one(t: Targets, fid: str) -> Fault:
    return _power_loss(t, fid, [t.rng.randrange(t.cluster.size)], "power-loss")


def power_loss_minority(t: Targets, fid: str) -> Fault:
    return _power_loss(t, fid, t.minority(), "power-loss-minority")


def power_loss_all(t: Targets, fid: str) -> Fault:
    fault = _power_loss(t, fid, list(range(t.cluster.size)), "power-loss-all", all_nodes=True)
    description = {**fault.description, "description": "power loss on every node, then restart all nodes"}
    return Fault(description, fault.inject, fault.undo)


CORRUPTIONS = ("flip-journal", "truncate-journal", "flip-snapshot", "truncate-snapshot")


def corrupt_file(data_dir: Path, how: str, rng: random.Random) -> dict[str, Json]:
    """Damages the node's journal or snapshot as ``how`` says (the journal if there is no snapshot yet)."""
    target = "snapshot" if how.endswith("snapshot") and (data_dir / "raft" / "snapshot").exists() else "journal"
    path = data_dir / "raft" / target
    data = bytearray(path.read_bytes())
    if how.startswith("flip") and len(data) > 1:
        at = rng.randrange(len(data) // 2, len(data))  # the newer half: recent records, or the dump's body
        data[at] ^= 1 << rng.randrange(8)
        change: dict[str, Json] = {"flipped_byte": at}
    else:
        cut = rng.randint(1, max(1, min(64, len(data) // 4)))
        del data[len(data) - cut :]
        change = {"truncated_bytes": cut}
    path.write_bytes(bytes(data))
    return {"file": f"raft/{target}", "how": how, **change}


def _ready_or_exited(cluster: Cluster, i: int, timeout: float) -> int | None:
    """Waits until node i is ready (returns None) or has exited (returns its exit code)."""
    node = cluster.nodes[i]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        proc = node.proc
        if proc is None:
            raise RuntimeError(f"{node.node_id} was never started")
        code = proc.poll()
        if code is not None:
            node.proc = None
            return code
        try:
            if http_json(node.url + "/readyz", timeout=1.0)[0] == 200:
                return None
        except (OSError, ValueError):
            pass
        time.sleep(0.1)
    raise TimeoutError(f"{node.node_id} neither became ready nor exited within {timeout:g} s")


def _last_line(path: Path) -> str:
    lines = path.read_text(encoding="utf-8", errors="replace").strip().splitlines() if path.exists() else []
    return lines[-1] if lines else ""


def corrupt_minority(t: Targets, fid: str) -> Fault:
    victims = t.minority()
    ids: list[Json] = [t.node_id(i) for i in victims]
    plan: dict[str, Json] = {t.node_id(i): t.rng.choice(CORRUPTIONS) for i in victims}
    damage: dict[str, Json] = {}

    def inject() -> None:
        for i in victims:
            t.cluster.kill(i)
            how = plan[t.node_id(i)]
            assert isinstance(how, str)
            damage[t.node_id(i)] = corrupt_file(t.cluster.nodes[i].data_dir, how, t.rng)

    def undo() -> dict[str, Json]:
        outcomes: dict[str, Json] = {}
        for i in victims:
            node = t.cluster.nodes[i]
            t.cluster.start(i)
            try:
                code = _ready_or_exited(t.cluster, i, timeout=60.0)
            except TimeoutError as exc:
                t.problems.append(f"{fid}: {exc}")
                outcomes[node.node_id] = {"outcome": "stuck"}
                continue
            if code is None:
                outcomes[node.node_id] = {"outcome": "repaired"}
                continue
            reason = _last_line(node.log_path)
            outcomes[node.node_id] = {"outcome": "refused", "exit_code": code, "reason": reason}
            if code in REFUSAL_EXIT_CODES:
                t.expected_log_lines.append(reason)
            else:
                t.problems.append(f"{fid}: {node.node_id} exited with {code} on damaged files, not a refusal: {reason}")
            t.cluster.wipe(i)  # the operator's re-seed: the node rejoins from its peers
            t.cluster.start(i)
        return {"id": fid, "kind": "restart", "nodes": ids, "damage": damage, "outcomes": outcomes}

    description: dict[str, Json] = {"id": fid, "kind": "corrupt", "nodes": ids, "plan": plan}
    return Fault(description, inject, undo)


NEMESES: dict[str, FaultMaker] = {
    "kill-node": kill_node,
    "kill-leader": kill_leader,
    "kill-minority": kill_minority,
    "kill-all": kill_all,
    "pause-leader": pause_leader,
    "partition-leader": partition_leader,
    "isolate-follower": isolate_follower,
    "majority-minority": majority_minority,
    "one-way-leader": one_way_leader,
    "client-cut-leader": client_cut_leader,
    "slow-network": slow_network,
    "bandwidth": bandwidth,
    "reset-peer": reset_peer,
    "power-loss-one": power_loss_one,
    "power-loss-minority": power_loss_minority,
    "power-loss-all": power_loss_all,
    "corrupt-minority": corrupt_minority,
}
SCENARIOS = tuple(NEMESES)
#: scenarios that take every node down: the quiet time after each lets the cluster restart before the next one
ALL_NODE = frozenset({"kill-all", "power-loss-all"})
ALL_NODE_QUIET_S = (4.0, 7.0)
#: scenarios in which the leader must change at least once (the fault takes the leader away)
LEADER_CHANGING = frozenset({"kill-leader", "pause-leader", "partition-leader", "one-way-leader"})


@dataclass
class Nemesis:
    name: str
    targets: Targets
    history: HistoryWriter
    quiet_s: tuple[float, float] = (1.0, 2.0)
    fault_s: tuple[float, float] = (1.5, 3.0)
    faults: int = 0
    _undo: Undo | None = None

    def __post_init__(self) -> None:
        if self.name not in NEMESES:
            raise ValueError(f"unknown nemesis {self.name!r}; known: {', '.join(SCENARIOS)}")
        if self.name in ALL_NODE:
            self.quiet_s = ALL_NODE_QUIET_S

    @property
    def problems(self) -> list[str]:
        """Faults that did not end as they must (e.g. a node that crashed on a damaged file)."""
        return self.targets.problems

    def start_fault(self) -> bool:
        """Starts one fault (recorded before it is injected); returns False if it could not (e.g. no leader)."""
        fid = f"{self.name}-{self.faults}"
        fault = NEMESES[self.name](self.targets, fid)
        if fault is None:
            return False
        self.history.nemesis("start-fault", fault.description)
        self._undo = fault.undo
        fault.inject()
        self.faults += 1
        return True

    def stop_fault(self) -> None:
        """Stops the fault in progress, if any (recorded after it is undone: the nodes are back)."""
        undo, self._undo = self._undo, None
        if undo is not None:
            self.history.nemesis("stop-fault", undo())

    @property
    def active(self) -> bool:
        return self._undo is not None

    # -- the schedule --------------------------------------------------------------------------------------------

    def run(self, until: float, cancel: threading.Event) -> None:
        """Quiet, fault, quiet, fault, ... until the monotonic time ``until``; the last fault is always stopped."""
        try:
            while not cancel.is_set():
                if cancel.wait(self.targets.rng.uniform(*self.quiet_s)) or time.monotonic() >= until:
                    break
                hold = self.targets.rng.uniform(*self.fault_s)
                if not self.start_fault():
                    continue
                cancel.wait(hold)  # held in full even past ``until``: a pause must outlast an election timeout
                self.stop_fault()
                if time.monotonic() >= until:
                    break
        finally:
            self.stop_fault()
