"""Nemeses: faults injected from outside, each recorded as a start-fault / stop-fault pair with one ``id``.

- ``kill-leader``: kill -9 the leader; restart it when the fault stops.
- ``kill-all``: kill -9 every node; restart all nodes when the fault stops (described so that
  :func:`chaos.check_availability.describes_all_node_restart` recognises it).
- ``pause-leader``: SIGSTOP the leader for longer than the longest election timeout (1.2 s by default); SIGCONT.
- ``partition-leader``: isolate the leader from every other node through the proxies; heal.
- ``majority-minority``: cut the nodes into a random minority and majority; heal.

A seeded :class:`random.Random` chooses the quiet and fault durations and the partition's sides, so a seed replays
the same schedule (the targets depend on who is leader when the fault starts, which the cluster decides).
"""

from __future__ import annotations

import random
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from chaos.cluster import Cluster
from chaos.history import HistoryWriter, Json
from chaos.network import RaftNetwork

SCENARIOS = ("kill-leader", "kill-all", "pause-leader", "partition-leader", "majority-minority")


@dataclass
class Nemesis:
    name: str
    cluster: Cluster
    network: RaftNetwork
    history: HistoryWriter
    rng: random.Random
    quiet_s: tuple[float, float] = (1.0, 2.0)
    fault_s: tuple[float, float] = (1.5, 3.0)
    faults: int = 0
    _undo: Callable[[], Json] | None = None
    _open: dict[str, Json] = field(default_factory=dict)

    # -- the faults ----------------------------------------------------------------------------------------------

    def _leader(self) -> int | None:
        try:
            return self.cluster.wait_for_leader(timeout=5.0)
        except AssertionError:
            return None

    def start_fault(self) -> bool:
        """Starts one fault (recorded); returns False if it could not (e.g. no leader to target)."""
        fid = f"{self.name}-{self.faults}"
        nodes = self.cluster.nodes
        if self.name == "kill-all":
            desc: dict[str, Json] = {
                "id": fid,
                "kind": "kill-all",
                "description": "kill -9 every node, then restart all nodes",
                "all_nodes": True,
            }
            self.history.nemesis("start-fault", desc)
            for i in range(self.cluster.size):
                self.cluster.kill(i)

            def undo_all() -> Json:
                for i in range(self.cluster.size):
                    if not nodes[i].alive:
                        self.cluster.start(i)
                return {"id": fid, "kind": "kill-all", "description": "restart all nodes", "all_nodes": True}

            self._undo = undo_all
        elif self.name == "majority-minority":
            ids = [n.node_id for n in nodes]
            self.rng.shuffle(ids)
            minority, majority = sorted(ids[: len(ids) // 2]), sorted(ids[len(ids) // 2 :])
            sides: list[Json] = [list[Json](minority), list[Json](majority)]
            desc = {"id": fid, "kind": "partition", "minority": sides[0], "majority": sides[1]}
            self.history.nemesis("start-fault", desc)
            self.network.partition([minority, majority])

            def undo_partition() -> Json:
                self.network.heal()
                return {"id": fid, "kind": "heal"}

            self._undo = undo_partition
        else:
            leader = self._leader()
            if leader is None:
                return False
            node = nodes[leader].node_id
            desc = {"id": fid, "kind": self.name, "node": node}
            if self.name == "kill-leader":
                self.history.nemesis("start-fault", desc)
                self.cluster.kill(leader)

                def undo_kill() -> Json:
                    self.cluster.start(leader)
                    return {"id": fid, "kind": "restart", "node": node}

                self._undo = undo_kill
            elif self.name == "pause-leader":
                self.history.nemesis("start-fault", desc)
                self.cluster.signal(leader, signal.SIGSTOP)

                def undo_pause() -> Json:
                    self.cluster.signal(leader, signal.SIGCONT)
                    return {"id": fid, "kind": "resume", "node": node}

                self._undo = undo_pause
            elif self.name == "partition-leader":
                self.history.nemesis("start-fault", desc)
                self.network.isolate(node)

                def undo_isolate() -> Json:
                    self.network.heal()
                    return {"id": fid, "kind": "heal", "node": node}

                self._undo = undo_isolate
            else:
                raise ValueError(f"unknown nemesis {self.name!r}; known: {', '.join(SCENARIOS)}")
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
                if cancel.wait(self.rng.uniform(*self.quiet_s)) or time.monotonic() >= until:
                    break
                hold = self.rng.uniform(*self.fault_s)
                if not self.start_fault():
                    continue
                cancel.wait(hold)  # held in full even past ``until``: a pause must outlast an election timeout
                self.stop_fault()
                if time.monotonic() >= until:
                    break
        finally:
            self.stop_fault()
