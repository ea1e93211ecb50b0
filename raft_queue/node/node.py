"""Node: the composition root. Opens the store and the journal, checks they agree, starts the Raft replica, and
offers the HTTP layer its ``Backend`` interface.

Data directory layout::

    <data_dir>/raft/journal        DurableJournal (+ journal.meta: term, vote, commit index)
    <data_dir>/raft/snapshot       the last snapshot (pysyncobj's fullDumpFile)
    <data_dir>/state/              RocksDB: the applied state machine
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections import defaultdict
from pathlib import Path
from typing import Any

from raft_queue.config import NodeConfig
from raft_queue.node.group_commit import GroupCommitter
from raft_queue.node.raft.background_snapshots import BackgroundSnapshots
from raft_queue.node.raft.conf import raft_conf
from raft_queue.node.raft.fsm import QueueFSM, snapshot_last_index
from raft_queue.node.raft.journal import DurableJournal, JournalCorrupt
from raft_queue.node.raft.replica import QueueReplica
from raft_queue.node.tick_gaps import TickGaps
from state_machine.commands import Barrier, Command
from state_machine.contract import Applied, ClusterStatus, Member, ReplicationError
from state_machine.machine import AppliedEntry, QueueStateMachine
from state_machine.results import QueueInfo, StateDigest, TxnOutcome
from state_machine.rocks import RocksKV
from state_machine.snapshot import SnapshotCorrupt

log = logging.getLogger(__name__)

_ROLES = {0: "follower", 1: "candidate", 2: "leader"}


class StartupRefused(Exception):
    """The node's files are inconsistent or damaged; it must not serve. The message says what to do."""


class Node:
    """Implements ``api.backend.Backend``. Create it on the event loop's thread (the main thread)."""

    def __init__(self, config: NodeConfig, loop: asyncio.AbstractEventLoop) -> None:
        self._config = config
        self._loop = loop
        self._waiters: defaultdict[str, set[asyncio.Future[None]]] = defaultdict(set)
        raft_dir = Path(config.data_dir) / "raft"
        raft_dir.mkdir(parents=True, exist_ok=True)
        journal_file, dump_file = str(raft_dir / "journal"), str(raft_dir / "snapshot")
        self._kv = RocksKV(str(Path(config.data_dir) / "state"))
        self.machine = QueueStateMachine(self._kv)
        try:
            self._journal = DurableJournal(journal_file, fsync=config.fsync)
            self._check_consistency(journal_file, dump_file)
        except (JournalCorrupt, SnapshotCorrupt, StartupRefused) as exc:
            self._kv.close()
            raise StartupRefused(str(exc)) from exc
        self._peers_by_raft = {p.raft_address: p for p in config.peers}
        self_peer = config.self_peer
        dumps = BackgroundSnapshots(self.machine, dump_file, str(Path(config.data_dir) / "state-checkpoint"))
        self.fsm = QueueFSM(self.machine, self._journal, self._on_applied, dumps)
        # Staggered by node so that the nodes (whose journals grow alike) do not all dump at the same moment.
        rank = sorted(p.node_id for p in config.peers).index(self_peer.node_id)
        self._snapshot_bytes = int(config.snapshot_journal_mb * 1024 * 1024 * (1 + 0.25 * rank))
        self.replica = QueueReplica(
            self_peer.raft_address,
            [p.raft_address for p in config.other_peers],
            conf=raft_conf(config, journal_file, dump_file, self.fsm),
            journal=self._journal,
            fsm=self.fsm,
            dial_via={self._peer_address(node_id): addr for node_id, addr in config.raft_dial_via},
        )
        self.replica.addOnTickCallback(self._snapshot_when_large)
        self.tick_gaps = TickGaps()
        self.replica.addOnTickCallback(self.tick_gaps.tick)
        self.committer = GroupCommitter(self.replica.propose, loop)
        self.replica.on_contact_lost = self._contact_lost

    def _contact_lost(self, why: str) -> None:
        """Tick thread: the replica lost contact with a majority (leader) or its leader (follower)."""
        self._loop.call_soon_threadsafe(self.committer.give_up_in_flight, why)

    def _snapshot_when_large(self) -> None:
        """Tick thread: a journal over its size bound asks pysyncobj for a snapshot (then trims to it)."""
        if self._journal.size_bytes > self._snapshot_bytes and not self.fsm.dumps.running:
            self.replica.forceLogCompaction()

    def _peer_address(self, node_id: str) -> str:
        return next(p.raft_address for p in self._config.peers if p.node_id == node_id)

    def _check_consistency(self, journal_file: str, dump_file: str) -> None:
        data_dir = self._config.data_dir
        if self.machine.restoring and not os.path.exists(dump_file):
            raise StartupRefused(
                f"{data_dir}: a snapshot load was interrupted and the snapshot file is gone; "
                f"wipe {data_dir} so the node rejoins from its peers"
            )
        log_end = max(self._journal.last_index, snapshot_last_index(dump_file))
        applied = self.machine.applied_index
        if applied > log_end:
            raise StartupRefused(
                f"{data_dir}: the state (Raft index {applied}) is ahead of the Raft log (ends at {log_end}): "
                f"the journal was lost or replaced; wipe {data_dir} so the node rejoins from its peers"
            )

    # Backend
    @property
    def node_id(self) -> str:
        return self._config.node_id

    async def execute(self, op: Command, timeout: float) -> Applied:
        return await self.committer.submit(op, timeout)

    async def barrier(self, timeout: float) -> int:
        applied = await self.committer.submit(Barrier(), timeout)
        return applied.commit_index

    def transaction(self, transaction_id: str) -> TxnOutcome | None:
        return self.machine.transaction(transaction_id)

    @property
    def transaction_retention_ms(self) -> int:
        return round(self._config.transaction_retention_s * 1000)

    def queue_info(self, name: str) -> QueueInfo | None:
        return self.machine.queue_info(name)

    def list_queues(self) -> list[QueueInfo]:
        return self.machine.list_queues()

    def state_digest(self) -> StateDigest:
        return self.machine.digest()

    async def wait_for_activity(self, queue: str, timeout: float) -> None:
        fut: asyncio.Future[None] = self._loop.create_future()
        waiters = self._waiters[queue]
        waiters.add(fut)
        try:
            await asyncio.wait_for(fut, timeout)
        except TimeoutError:
            pass
        finally:
            waiters.discard(fut)
            if not waiters:
                self._waiters.pop(queue, None)

    def _on_applied(self, applied: AppliedEntry) -> None:
        """Tick thread: wake long polls of queues that gained ready messages."""
        if applied.woken:
            self._loop.call_soon_threadsafe(self._wake, applied.woken)

    def _wake(self, queues: frozenset[str]) -> None:
        for q in queues:
            for fut in self._waiters.get(q, ()):
                if not fut.done():
                    fut.set_result(None)

    def _status(self) -> dict[str, Any]:
        for _ in range(20):
            try:
                status: dict[str, Any] = self.replica.getStatus()
                return status
            except RuntimeError:  # pysyncobj's tick thread changed a dict while we read it
                continue
        raise ReplicationError("Raft status unavailable")

    def cluster_status(self) -> ClusterStatus:
        st = self._status()
        leader = st.get("leader")
        leader_peer = self._peers_by_raft.get(leader.address) if leader is not None else None
        leader_commit = st.get("leader_commit_idx")
        applied = int(st["last_applied"])
        me = self._config.self_peer
        members = [
            Member(
                node_id=p.node_id,
                raft_address=p.raft_address,
                http_url=p.http_url,
                connected=p is me or st.get(f"partner_node_status_server_{p.raft_address}") == 2,
            )
            for p in self._config.peers
        ]
        return ClusterStatus(
            node_id=me.node_id,
            role=_ROLES.get(int(st["state"]), "unknown"),
            leader_id=leader_peer.node_id if leader_peer else None,
            leader_url=leader_peer.http_url if leader_peer else None,
            term=int(st["raft_term"]),
            commit_index=int(st["commit_idx"]),
            applied_index=applied,
            has_quorum=bool(st["has_quorum"]),
            ready=leader_peer is not None and leader_commit is not None and applied >= int(leader_commit),
            members=members,
        )

    def leader(self) -> tuple[str | None, str | None]:
        # One attribute read (getStatus builds a dict of every counter: too much for every response header).
        leader = self.replica.leader_node()
        peer = self._peers_by_raft.get(leader.address) if leader is not None else None
        return (peer.node_id, peer.http_url) if peer is not None else (None, None)

    def close(self) -> None:
        """Stops Raft (joins the tick thread), then closes the store. Safe to call once."""
        self.replica.destroy_synchronous()
        self.fsm.dumps.join(timeout=60)
        self._kv.close()
