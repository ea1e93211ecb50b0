"""The interface the HTTP layer needs from a node, and the replication failures it must translate.

The API knows nothing of Raft or RocksDB: it hands a command to ``Backend.execute`` and gets back the result
with the commit index, or one of the ``ReplicationError`` outcomes below. Tests drive the API with a fake.

    ReplicationError
     ├── NoLeader          no leader is known; nothing was proposed.          Retry later (safe).
     ├── NotLeader         the node that got it is not the leader; not applied. Retry (safe).
     ├── Overloaded        the proposal queue is full; not applied.            Retry later (safe).
     └── OutcomeUnknown    it may or may not commit. Retry only with the same idempotency key.
"""

from __future__ import annotations

from typing import Protocol

import msgspec

from state_machine.commands import Command
from state_machine.results import QueueInfo, Result, StateDigest, TxnOutcome


class ReplicationError(Exception):
    """A command could not be shown to have committed."""

    retry_after_s: float = 1.0

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class NoLeader(ReplicationError):
    """No leader is known (election in progress, or no quorum). Nothing was proposed."""


class NotLeader(ReplicationError):
    """The command reached a node that is not the leader. It was not applied."""

    def __init__(self, detail: str, leader_url: str | None = None) -> None:
        super().__init__(detail)
        self.leader_url = leader_url


class Overloaded(ReplicationError):
    """The node's proposal queue is full. Nothing was proposed."""


class OutcomeUnknown(ReplicationError):
    """The command may or may not commit (timeout, leader change mid-flight, connection loss)."""


class Applied(msgspec.Struct, frozen=True):
    result: Result
    #: The Raft index of the entry that carried the command.
    commit_index: int


class Member(msgspec.Struct, frozen=True):
    node_id: str
    raft_address: str
    http_url: str
    #: Whether this node currently has a Raft connection to that member (True for itself).
    connected: bool


class ClusterStatus(msgspec.Struct, frozen=True):
    node_id: str
    role: str  # "leader" | "follower" | "candidate"
    leader_id: str | None
    leader_url: str | None
    term: int
    commit_index: int
    applied_index: int
    has_quorum: bool
    #: Leader known and this node has applied everything the leader told it is committed.
    ready: bool
    members: list[Member]


class Backend(Protocol):
    """What a node offers the HTTP layer. All methods are called on the event loop thread."""

    @property
    def node_id(self) -> str: ...

    async def execute(self, op: Command, timeout: float) -> Applied:
        """Replicates ``op`` through the log and returns its result once applied on this node.

        Raises a ``ReplicationError``; a timeout raises ``OutcomeUnknown``."""
        ...

    async def barrier(self, timeout: float) -> int:
        """Returns once this node has applied a log entry committed after the call began (a linearizable read
        point), with that entry's index. Raises a ``ReplicationError``."""
        ...

    def queue_info(self, name: str) -> QueueInfo | None:
        """This node's applied view of one queue (counts evaluated at the state machine's clock)."""
        ...

    def list_queues(self) -> list[QueueInfo]: ...

    def transaction(self, transaction_id: str) -> TxnOutcome | None:
        """This node's applied view of one transaction record (a pending one past its timeout reads as aborted),
        or None when no record exists (never begun, failed preconditions, or forgotten after its retention)."""
        ...

    @property
    def transaction_retention_ms(self) -> int:
        """How long decided transaction records are kept (stamped into each transaction command)."""
        ...

    def cluster_status(self) -> ClusterStatus: ...

    def leader(self) -> tuple[str | None, str | None]:
        """The (node id, HTTP URL) of the leader this node believes in; cheap enough for every response."""
        ...

    def state_digest(self) -> StateDigest:
        """A fingerprint of this node's applied state (to check that replicas agree)."""
        ...

    async def wait_for_activity(self, queue: str, timeout: float) -> None:
        """Returns when something changed on ``queue`` on this node (an enqueue, a nack, a lease or delay that
        ran out), or after ``timeout`` seconds, whichever is first. Used for long polls; may return early."""
        ...
