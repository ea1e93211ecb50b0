"""raft_conf: the one ``SyncObjConf`` a node runs with, built from its ``NodeConfig``."""

from __future__ import annotations

from typing import Any, Protocol

from pysyncobj import SyncObjConf

from raft_queue.config import NodeConfig


class SnapshotHooks(Protocol):
    """pysyncobj's snapshot hooks, as ``fsm.QueueFSM`` offers them."""

    def serialize(self, tmp_path: str, meta: Any) -> None: ...

    def deserialize(self, path: str) -> Any: ...

    def check(self) -> int: ...


def raft_conf(config: NodeConfig, journal_file: str, dump_file: str, fsm: SnapshotHooks) -> SyncObjConf:
    """The one SyncObjConf a node runs with (the choices are argued in raft_queue/DESIGN.md)."""
    emin, emax = config.election_timeout_min_s, config.election_timeout_max_s
    return SyncObjConf(
        password=config.cluster_secret,
        autoTick=True,
        autoTickPeriod=0.01,
        # Send each entry at once instead of on a timer: group commit happens above, in GroupCommitter.
        appendEntriesUseBatch=False,
        appendEntriesPeriod=min(0.05, emin / 4),
        raftMinTimeout=emin,
        raftMaxTimeout=emax,
        # A leader that hears from no majority for one election timeout steps down (default: 30 s).
        leaderFallbackTimeout=emax,
        connectionTimeout=max(emax * 1.5, 1.0),
        connectionRetryTime=0.25,
        # Fail fast without a leader: the client retries; a queued command could commit long after it gave up.
        commandsWaitLeader=False,
        journalFile=journal_file,
        fullDumpFile=dump_file,
        # The FSM's snapshot hooks. With a checker, pysyncobj asks it whether a dump is running or done: dumps are
        # written off the tick thread (fsm.py, background_snapshots.py).
        serializer=fsm.serialize,
        deserializer=fsm.deserialize,
        serializeChecker=fsm.check,
        logCompactionMinEntries=config.snapshot_every_entries,
        logCompactionMinTime=config.snapshot_min_interval_s,
        # Dumps run off the tick thread (BackgroundSnapshots), and pysyncobj's split windows would hold a dump
        # forced by the journal's size for up to logCompactionMinTime; Node staggers the size thresholds instead.
        logCompactionSplit=False,
        # One append_entries is pickled, compressed, encrypted and base64'd by pysyncobj: four copies in memory.
        # 4 MiB keeps a leader that feeds a lagging follower well inside its memory budget (32 MiB did not).
        appendEntriesBatchSizeBytes=4 * 1024 * 1024,
        logCompactionBatchSize=1024 * 1024,
        sendBufferSize=1024 * 1024,
        recvBufferSize=1024 * 1024,
        bindAddress=config.raft_bind or None,
        dynamicMembershipChange=False,
    )
