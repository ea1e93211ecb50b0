"""FlushingTransport: pysyncobj's TCP transport, made to keep raft-queue's durability promise.

- The journal is fsynced (one fsync for everything added since the last one) before any ``append_entries``,
  ``next_node_idx`` or vote message leaves: a follower is durable before it acknowledges, and the leader is
  durable before it replicates, so its own vote in the commit quorum is honest (raft_queue/DESIGN.md, steps 2-3).
- A snapshot chunk does not advance a follower's commit index (``hold_commit_during_snapshot_transfer``).
- Optional dial-through addresses (a proxy per node pair, for network fault tests).
- PreVote's messages (``pre_vote``, ``pre_vote_response``) are answered and counted here, before pysyncobj sees
  them, by the replica's ``ElectionHooks``; an ``append_entries`` is noted as contact with a leader first; a
  proposal forwarded to a leader that has lost contact with its majority is refused at once (CheckQuorum).
  They travel like pysyncobj's own messages: pickled, and encrypted and authenticated with the cluster secret.
Everything here runs on pysyncobj's tick thread.
"""

from __future__ import annotations

import logging
import os
from typing import Any, Protocol

from pysyncobj.monotonic import monotonic as monotonicTime
from pysyncobj.tcp_connection import CONNECTION_STATE
from pysyncobj.transport import TCPTransport

from raft_queue.node.raft.journal import DurableJournal, JournalFailed
from raft_queue.node.raft.patches import registered_journal
from raft_queue.node.raft.pre_vote import PRE_VOTE, PRE_VOTE_RESPONSE

log = logging.getLogger(__name__)

_FLUSH_BEFORE = frozenset({"append_entries", "next_node_idx", "request_vote", "response_vote"})

#: Exit code of a node whose fsync failed: the disk state is unknown, so it stops rather than lie about it.
EXIT_JOURNAL_FAILED = 74


def flush_or_stop(journal: DurableJournal) -> None:
    """fsyncs the journal; after a failed fsync the disk state is unknown, so the node must stop."""
    try:
        journal.flush()
    except JournalFailed as exc:
        log.critical("stopping: the Raft journal cannot be made durable: %s", exc)
        os._exit(EXIT_JOURNAL_FAILED)


class ElectionHooks(Protocol):
    """What the transport asks of the SyncObj it serves (``replica.QueueReplica``); all on the tick thread."""

    def answer_pre_vote(self, node: Any, message: dict[str, Any]) -> dict[str, Any]: ...

    def count_pre_vote(self, node: Any, message: dict[str, Any]) -> None: ...

    def heard_append_entries(self, message: dict[str, Any]) -> None: ...

    def refuse_forwarded(self, message: dict[str, Any]) -> dict[str, Any] | None:
        """None: let pysyncobj append it; else the refusal to send back ({}: none, drop the command)."""


class FlushingTransport(TCPTransport):  # type: ignore[misc]
    """pysyncobj's TCP transport, plus: fsync before acknowledging messages, and optional dial-through
    addresses (a proxy per node pair, for network fault tests). The peer's identity is unaffected: pysyncobj's
    first message on a connection carries the dialler's own address."""

    def __init__(self, syncObj: Any, selfNode: Any, otherNodes: Any) -> None:
        super().__init__(syncObj, selfNode, otherNodes)
        self._journal = registered_journal(syncObj.conf.journalFile)
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
        if isinstance(message, dict):
            hooks: ElectionHooks = self._syncObj
            kind = message.get("type")
            if kind == PRE_VOTE:
                self.send(node, hooks.answer_pre_vote(node, message))
                return
            if kind == PRE_VOTE_RESPONSE:
                hooks.count_pre_vote(node, message)
                return
            if kind == "append_entries":
                hooks.heard_append_entries(message)
            elif kind == "apply_command":
                refusal = hooks.refuse_forwarded(message)
                if refusal is not None:  # refused: answered (or dropped, when nobody waits for an answer)
                    if refusal:
                        self.send(node, refusal)
                    return
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
