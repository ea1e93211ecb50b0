"""The interface the HTTP layer needs from a node (rqlite's pattern: the HTTP layer declares the store it uses).

The API knows nothing of Raft or RocksDB: it hands a command to ``Backend.execute`` and gets back an ``Applied``
(the result with the commit index) or one of the ``ReplicationError`` outcomes. Those types, and the cluster
status, are the shared vocabulary in ``state_machine.contract``. Tests drive the API with a fake.
"""

from __future__ import annotations

from typing import Protocol

from state_machine.commands import Command
from state_machine.contract import Applied, ClusterStatus
from state_machine.results import QueueInfo, StateDigest, TxnOutcome


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
