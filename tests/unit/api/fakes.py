"""A scriptable ``Backend`` for driving the HTTP layer without Raft."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from api.backend import Backend
from state_machine.commands import (
    AbortTxn,
    Ack,
    Barrier,
    BeginTxn,
    Command,
    CommitTxn,
    CreateQueue,
    DeleteQueue,
    Enqueue,
    Extend,
    Nack,
    Receive,
    StageTxn,
    Transact,
)
from state_machine.config import QueueConfig
from state_machine.contract import Applied, ClusterStatus, Member
from state_machine.results import (
    BarrierPassed,
    Enqueued,
    EnqueuedMessage,
    QueueCounts,
    QueueCreated,
    QueueDeleted,
    QueueInfo,
    Received,
    Result,
    Settled,
    SettleOutcome,
    StateDigest,
    TxnOutcome,
    TxnStatus,
)

#: op -> result; may raise a ``ReplicationError`` (or anything else, to simulate a bug).
Script = Callable[[Command], Result]

NOW_MS = 1_714_564_800_123  # 2024-05-01T12:00:00.123Z
RETENTION_MS = 7 * 24 * 3600 * 1000


def leader_status(node_id: str = "n1", **changes: object) -> ClusterStatus:
    status = ClusterStatus(
        node_id=node_id,
        role="leader",
        leader_id=node_id,
        leader_url=f"http://{node_id}.example:8000",
        term=3,
        commit_index=42,
        applied_index=42,
        has_quorum=True,
        ready=True,
        members=[Member(node_id, f"{node_id}.example:7000", f"http://{node_id}.example:8000", True)],
    )
    return status if not changes else _replace(status, **changes)


def follower_status(node_id: str = "n2", leader_id: str | None = "n1", **changes: object) -> ClusterStatus:
    fields: dict[str, object] = {
        "role": "follower",
        "leader_id": leader_id,
        "leader_url": None if leader_id is None else f"http://{leader_id}.example:8000",
        "ready": leader_id is not None,
    }
    return leader_status(node_id, **{**fields, **changes})


def _replace(status: ClusterStatus, **changes: object) -> ClusterStatus:
    import msgspec

    return msgspec.structs.replace(status, **changes)


def queue_info(name: str, config: QueueConfig | None = None, **counts: int) -> QueueInfo:
    return QueueInfo(
        name=name,
        config=config or QueueConfig(),
        counts=QueueCounts(
            ready=counts.get("ready", 0),
            leased=counts.get("leased", 0),
            delayed=counts.get("delayed", 0),
            dead_lettered=counts.get("dead_lettered", 0),
            enqueued_total=counts.get("enqueued_total", 0),
            acked_total=counts.get("acked_total", 0),
        ),
        created_at_ms=NOW_MS,
    )


class FakeBackend:
    """Records every op; answers with ``script`` (default: a plausible result for each command)."""

    def __init__(self, node_id: str = "n1", status: ClusterStatus | None = None) -> None:
        self._node_id = node_id
        self.status = status or leader_status(node_id)
        self.script: Script = self.default_script
        self.ops: list[Command] = []
        self.timeouts: list[float] = []
        self.commit_index = 100
        self.queues: dict[str, QueueInfo] = {}
        self.barrier_calls = 0
        self.barrier_error: Exception | None = None
        #: Timeouts ``wait_for_activity`` was called with; ``waiting`` is set on each call.
        self.wait_calls: list[float] = []
        self.waiting = asyncio.Event()
        self._activity = asyncio.Event()
        #: What ``transaction(id)`` answers (the default script does not maintain it).
        self.transactions: dict[str, TxnOutcome] = {}
        self.retention_ms = RETENTION_MS

    # --- the Backend protocol ---

    @property
    def node_id(self) -> str:
        return self._node_id

    async def execute(self, op: Command, timeout: float) -> Applied:
        self.ops.append(op)
        self.timeouts.append(timeout)
        result = self.script(op)
        self.commit_index += 1
        return Applied(result, self.commit_index)

    async def barrier(self, timeout: float) -> int:
        self.barrier_calls += 1
        self.timeouts.append(timeout)
        if self.barrier_error is not None:
            raise self.barrier_error
        self.commit_index += 1
        return self.commit_index

    def queue_info(self, name: str) -> QueueInfo | None:
        return self.queues.get(name)

    def list_queues(self) -> list[QueueInfo]:
        return list(self.queues.values())

    def transaction(self, transaction_id: str) -> TxnOutcome | None:
        return self.transactions.get(transaction_id)

    @property
    def transaction_retention_ms(self) -> int:
        return self.retention_ms

    def cluster_status(self) -> ClusterStatus:
        return self.status

    def leader(self) -> tuple[str | None, str | None]:
        return self.status.leader_id, self.status.leader_url

    def state_digest(self) -> StateDigest:
        return StateDigest(applied_index=self.commit_index, digest="ab" * 32, keys=3)

    async def wait_for_activity(self, queue: str, timeout: float) -> None:
        self.wait_calls.append(timeout)
        self.waiting.set()
        try:
            await asyncio.wait_for(self._activity.wait(), timeout)
        except TimeoutError:
            return
        self._activity.clear()

    # --- test controls ---

    def release(self) -> None:
        """Wakes a pending (or the next) ``wait_for_activity``."""
        self._activity.set()

    def default_script(self, op: Command) -> Result:
        if isinstance(op, CreateQueue):
            existed = op.name in self.queues
            self.queues.setdefault(op.name, queue_info(op.name, op.config))
            return QueueCreated(created=not existed)
        if isinstance(op, DeleteQueue):
            self.queues.pop(op.name, None)
            return QueueDeleted()
        if isinstance(op, Enqueue):
            first = self.commit_index * 10
            return Enqueued([EnqueuedMessage(m.message_id, first + i) for i, m in enumerate(op.messages)])
        if isinstance(op, Receive):
            return Received([])
        if isinstance(op, Ack):
            return Settled([SettleOutcome.ACKED] * len(op.receipts))
        if isinstance(op, Nack):
            return Settled([SettleOutcome.NACKED] * len(op.receipts))
        if isinstance(op, Extend):
            return Settled([SettleOutcome.EXTENDED] * len(op.receipts))
        if isinstance(op, Transact | BeginTxn | StageTxn | CommitTxn | AbortTxn):
            return self._transaction_script(op)
        assert isinstance(op, Barrier)
        return BarrierPassed()

    def _transaction_script(self, op: Transact | BeginTxn | StageTxn | CommitTxn | AbortTxn) -> TxnOutcome:
        """Plausible first-time outcomes (no records kept): committed, pending, or aborted by the client."""
        index = self.commit_index + 1  # the index ``execute`` is about to report
        expires = NOW_MS + RETENTION_MS
        if isinstance(op, Transact):
            results = [self.default_script(sub) for sub in op.ops]
            return TxnOutcome(op.transaction_id, TxnStatus.COMMITTED, index, results, expires_at_ms=expires)
        if isinstance(op, BeginTxn):
            return TxnOutcome(op.transaction_id, TxnStatus.PENDING, expires_at_ms=NOW_MS + op.timeout_ms)
        if isinstance(op, StageTxn):
            return TxnOutcome(
                op.transaction_id, TxnStatus.PENDING, expires_at_ms=NOW_MS + 30_000, staged_ops=len(op.ops)
            )
        if isinstance(op, CommitTxn):
            return TxnOutcome(op.transaction_id, TxnStatus.COMMITTED, index, expires_at_ms=expires)
        return TxnOutcome(op.transaction_id, TxnStatus.ABORTED, index, reason="aborted", expires_at_ms=expires)


def _conforms(backend: FakeBackend) -> Backend:
    return backend  # mypy checks that FakeBackend implements the Backend protocol
