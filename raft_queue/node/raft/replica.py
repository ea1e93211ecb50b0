"""QueueReplica: the one SyncObj subclass. It proposes entries and hands each committed one to ``fsm.QueueFSM``.

pysyncobj is extended through its seams, never forked: ``patches.install()`` (called here, at node start) puts our
``DurableJournal`` behind ``createJournal`` and demotes one false-alarm log line; ``transport.FlushingTransport``
fsyncs before anything that promises durability leaves; a tick callback flushes too, so a single-node cluster
(which commits without sending anything) is durable before the next tick can commit; ``fsm.QueueFSM`` holds the
apply and snapshot hooks.

There is exactly one replicated method, taking bytes, so method IDs never shift between versions; the command
codec inside the bytes carries the versioning.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable
from typing import Any

from pysyncobj import SyncObj, SyncObjConf, replicated

from raft_queue.node.raft import patches
from raft_queue.node.raft.fsm import QueueFSM
from raft_queue.node.raft.journal import DurableJournal
from raft_queue.node.raft.transport import FlushingTransport, flush_or_stop
from state_machine.contract import NoLeader
from state_machine.machine import AppliedEntry

_REGULAR_COMMAND = 0  # pysyncobj's _COMMAND_TYPE.REGULAR


class QueueReplica(SyncObj):  # type: ignore[misc]
    def __init__(
        self,
        self_address: str,
        partners: list[str],
        *,
        conf: SyncObjConf,
        journal: DurableJournal,
        fsm: QueueFSM,
        dial_via: dict[str, tuple[str, int]] | None = None,
    ) -> None:
        patches.install()
        #: peer raft address -> (host, port) to dial instead (read by FlushingTransport during __init__).
        self.dial_via = dict(dial_via or {})
        self._fsm = fsm
        patches.register_journal(conf.journalFile, journal)
        super().__init__(self_address, partners, conf, transportClass=FlushingTransport)
        self.addOnTickCallback(lambda: flush_or_stop(journal))
        self._apply_id = self._methodToID[self._getFuncName("apply_entry")]

    @replicated  # type: ignore[untyped-decorator]
    def apply_entry(self, data: bytes) -> AppliedEntry | None:
        """pysyncobj's replicated method (it must live on the SyncObj): the FSM applies the entry."""
        return self._fsm.apply(self.raftLastApplied + 1, data)

    def leader_node(self) -> Any:
        """pysyncobj's current leader node (or None): a plain attribute read, safe from any thread."""
        return self._getLeader()

    def propose(self, data: bytes, callback: Callable[[Any, int], None]) -> None:
        """Queues one log entry; ``callback(result, fail_reason)`` runs on the tick thread.

        Raises ``NoLeader`` (nothing proposed) when no leader is known, or when the known leader is another node
        this one has no connection to: pysyncobj would send the command into the void and never call back (a
        node cut off from every peer never even starts an election), so the client would wait out its whole
        timeout for an unknown outcome where a definite "not proposed" is the truth.

        ``propose`` pickles ``(method id, (data,))`` with protocol 5, so the journal stores the entry bytes raw
        (pysyncobj's own protocol 2 would store them as latin-1 text, ~1.5x for binary).
        """
        leader = self._getLeader()
        if leader is None:
            raise NoLeader("no Raft leader is known (election in progress or no quorum)")
        if leader != self.selfNode and not self.isNodeConnected(leader):
            raise NoLeader(f"the last known leader ({leader.address}) is unreachable from this node")
        command = pickle.dumps((self._apply_id, (data,)), protocol=pickle.HIGHEST_PROTOCOL)
        self._applyCommand(command, callback, _REGULAR_COMMAND)
