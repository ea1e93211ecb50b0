"""The pysyncobj adapter: the one SyncObj subclass, its durable journal seam and its flushing transport.

These extensions make pysyncobj durable and safe without forking it:
- ``createJournal`` (module-level seam in ``pysyncobj.syncobj``) returns our fsyncing ``DurableJournal``.
- ``FlushingTransport`` fsyncs the journal (one fsync for everything added since the last one) before any
  ``append_entries``/``next_node_idx``/vote message leaves: a follower is durable before it acknowledges, and
  the leader is durable before it replicates, so its own vote in the commit quorum is safe.
- A tick callback flushes too, so a single-node cluster (which commits without sending anything) is durable
  before the next tick can commit.
- Snapshot chunks do not advance a follower's commit index (``hold_commit_during_snapshot_transfer``).
- pysyncobj logs CRITICAL "truncating already-applied log entries" whenever an append_entries overlaps
  entries a follower holds, even when it re-adds the very same entries (a leader resending after a
  ``reset``). Our journal re-adopts identical entries and fails with ``JournalDiverged`` (the node stops)
  when a committed entry would really be replaced, so that line is a false alarm: it is logged at DEBUG.

There is exactly one replicated method, taking bytes, so method IDs never shift between versions; the command
codec inside the bytes carries the versioning.
"""

from __future__ import annotations

import logging
import os
import pickle
from collections.abc import Callable
from typing import Any

import pysyncobj.syncobj as _syncobj_module
from pysyncobj import SyncObj, SyncObjConf, replicated
from pysyncobj.monotonic import monotonic as monotonicTime
from pysyncobj.tcp_connection import CONNECTION_STATE
from pysyncobj.transport import TCPTransport

from raft_queue.node.raft.journal import DurableJournal, JournalFailed
from state_machine.commands import UnsupportedVersion
from state_machine.contract import NoLeader
from state_machine.machine import AppliedEntry, QueueStateMachine

log = logging.getLogger(__name__)

_FALSE_ALARM = "truncating already-applied log entries"


def _demote_truncation_alarm(record: logging.LogRecord) -> bool:
    """A logger filter for pysyncobj.syncobj: its overlap-truncation CRITICAL becomes DEBUG (see above)."""
    if record.levelno == logging.CRITICAL and isinstance(record.msg, str) and record.msg.startswith(_FALSE_ALARM):
        record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        return _syncobj_log.isEnabledFor(logging.DEBUG)
    return True


_syncobj_log = logging.getLogger(_syncobj_module.__name__)
_syncobj_log.addFilter(_demote_truncation_alarm)

_JOURNALS: dict[str, DurableJournal] = {}
_FLUSH_BEFORE = frozenset({"append_entries", "next_node_idx", "request_vote", "response_vote"})
_REGULAR_COMMAND = 0  # pysyncobj's _COMMAND_TYPE.REGULAR

#: Exit codes of a node that stops itself rather than diverge, lie about durability, or serve corrupt data.
EXIT_NEWER_LOG = 75
EXIT_APPLY_FAILED = 70
EXIT_JOURNAL_FAILED = 74


def flush_or_stop(journal: DurableJournal) -> None:
    """fsyncs the journal; after a failed fsync the disk state is unknown, so the node must stop."""
    try:
        journal.flush()
    except JournalFailed as exc:
        log.critical("stopping: the Raft journal cannot be made durable: %s", exc)
        os._exit(EXIT_JOURNAL_FAILED)


def _create_journal(journalFile: str | None = None) -> DurableJournal:
    if journalFile is None or journalFile not in _JOURNALS:
        raise RuntimeError("raft-queue opens its journal before creating the SyncObj; none registered")
    return _JOURNALS[journalFile]


_syncobj_module.createJournal = _create_journal


class FlushingTransport(TCPTransport):  # type: ignore[misc]
    """pysyncobj's TCP transport, plus: fsync before acknowledging messages, and optional dial-through
    addresses (a proxy per node pair, for network fault tests). The peer's identity is unaffected: pysyncobj's
    first message on a connection carries the dialler's own address."""

    def __init__(self, syncObj: Any, selfNode: Any, otherNodes: Any) -> None:
        super().__init__(syncObj, selfNode, otherNodes)
        self._journal = _JOURNALS[syncObj.conf.journalFile]
        self._dial_via: dict[str, tuple[str, int]] = getattr(syncObj, "dial_via", {})

    def _connectIfNecessarySingle(self, node: Any) -> bool:
        via = self._dial_via.get(getattr(node, "address", ""))
        if via is None:
            return bool(super()._connectIfNecessarySingle(node))
        # Same checks as pysyncobj 0.3.17's implementation; only the dialled address differs.
        conn = self._connections.get(node)
        if conn is not None and conn.state != CONNECTION_STATE.DISCONNECTED:
            return True
        if not self._shouldConnect(node):
            return False
        last = self._lastConnectAttempt.get(node)
        if last is not None and monotonicTime() - last < self._syncObj.conf.connectionRetryTime:
            return False
        self._lastConnectAttempt[node] = monotonicTime()
        return bool(self._connections[node].connect(*via))

    def send(self, node: Any, message: Any) -> bool:
        if message.get("type") in _FLUSH_BEFORE:
            flush_or_stop(self._journal)
        return bool(super().send(node, message))

    def _onMessageReceived(self, node: Any, message: Any) -> None:
        hold_commit_during_snapshot_transfer(message, self._syncObj.raftCommitIndex)
        super()._onMessageReceived(node, message)


def hold_commit_during_snapshot_transfer(message: Any, commit_index: int) -> None:
    """Stops a snapshot chunk from advancing a follower's commit index over entries the leader never sent.

    pysyncobj 0.3.17 handles an append_entries that carries a snapshot chunk (``serialized``) without touching the
    follower's log, then sets ``commit = min(leader's commit, own last index)``. A follower whose tail diverged
    (an old leader cut off with entries nobody else has) thereby commits and *applies* that tail while the
    snapshot streams in, and answers its clients "ok" for writes the cluster never committed. The chaos suite
    found it (partition-leader: an acknowledged enqueue lost, one message leased twice with the same receipt).
    The chunk's commit index is held at the follower's own; the installed snapshot and the append_entries after
    it move the commit index on, as Raft intends.
    """
    if message.get("type") == "append_entries" and "serialized" in message and "commit_index" in message:
        message["commit_index"] = min(message["commit_index"], commit_index)


class QueueReplica(SyncObj):  # type: ignore[misc]
    def __init__(
        self,
        self_address: str,
        partners: list[str],
        *,
        conf: SyncObjConf,
        journal: DurableJournal,
        machine: QueueStateMachine,
        on_applied: Callable[[AppliedEntry], None],
        dial_via: dict[str, tuple[str, int]] | None = None,
    ) -> None:
        #: peer raft address -> (host, port) to dial instead (read by FlushingTransport during __init__).
        self.dial_via = dict(dial_via or {})
        self._machine = machine
        self._on_applied = on_applied
        _JOURNALS[conf.journalFile] = journal
        super().__init__(self_address, partners, conf, transportClass=FlushingTransport)
        self.addOnTickCallback(lambda: flush_or_stop(journal))
        self._apply_id = self._methodToID[self._getFuncName("apply_entry")]

    @replicated  # type: ignore[untyped-decorator]
    def apply_entry(self, data: bytes) -> AppliedEntry | None:
        index = self.raftLastApplied + 1
        try:
            applied = self._machine.apply(index, data)
        except UnsupportedVersion as exc:
            log.critical("stopping: %s", exc)
            os._exit(EXIT_NEWER_LOG)
        except BaseException:
            # pysyncobj would retry this entry forever; stopping is the only way not to diverge.
            log.critical("stopping: applying log entry %d failed", index, exc_info=True)
            os._exit(EXIT_APPLY_FAILED)
        if applied is not None:
            self._on_applied(applied)
        return applied

    def leader_node(self) -> Any:
        """pysyncobj's current leader node (or None): a plain attribute read, safe from any thread."""
        return self._getLeader()

    def propose(self, data: bytes, callback: Callable[[Any, int], None]) -> None:
        """Queues one log entry; ``callback(result, fail_reason)`` runs on the tick thread.

        Raises ``NoLeader`` (nothing proposed) when no leader is known, or when the known leader is another node
        this one has no connection to: pysyncobj would send the command into the void and never call back (a
        node cut off from every peer never even starts an election), so the client would wait out its whole
        timeout for an unknown outcome where a definite "not proposed" is the truth.
        """
        leader = self._getLeader()
        if leader is None:
            raise NoLeader("no Raft leader is known (election in progress or no quorum)")
        if leader != self.selfNode and not self.isNodeConnected(leader):
            raise NoLeader(f"the last known leader ({leader.address}) is unreachable from this node")
        command = pickle.dumps((self._apply_id, (data,)), protocol=pickle.HIGHEST_PROTOCOL)
        self._applyCommand(command, callback, _REGULAR_COMMAND)
