"""A ``Backend`` over a real ``QueueStateMachine`` on ``MemoryKV``: the API against the real semantics.

Each ``execute`` is one log entry stamped with ``now_ms`` (set it to move time). ``unknown_after_apply`` makes the
next write apply and then raise ``OutcomeUnknown``, as when a leader commits but the answer is lost.
"""

from __future__ import annotations

import asyncio

from api.backend import Backend
from state_machine.commands import Barrier, Command, Entry, encode_entry
from state_machine.contract import Applied, ClusterStatus, ReplicationError
from state_machine.kv import MemoryKV
from state_machine.machine import QueueStateMachine
from state_machine.results import QueueInfo, StateDigest, TxnOutcome
from tests.unit.api.fakes import NOW_MS, RETENTION_MS, leader_status


class MachineBackend:
    def __init__(self, node_id: str = "n1") -> None:
        self._node_id = node_id
        self.machine = QueueStateMachine(MemoryKV())
        self.index = 0
        self.now_ms = NOW_MS
        self.retention_ms = RETENTION_MS
        self.ops: list[Command] = []
        #: Raised by the next ``execute`` after it applied its command (then cleared).
        self.unknown_after_apply: ReplicationError | None = None

    @property
    def node_id(self) -> str:
        return self._node_id

    async def execute(self, op: Command, timeout: float) -> Applied:
        self.ops.append(op)
        self.index += 1
        applied = self.machine.apply(self.index, encode_entry(Entry(self.now_ms, [op])))
        assert applied is not None
        if self.unknown_after_apply is not None:
            error, self.unknown_after_apply = self.unknown_after_apply, None
            raise error
        [result] = applied.results
        return Applied(result, self.index)

    async def barrier(self, timeout: float) -> int:
        return (await self.execute(Barrier(), timeout)).commit_index

    def queue_info(self, name: str) -> QueueInfo | None:
        return self.machine.queue_info(name)

    def list_queues(self) -> list[QueueInfo]:
        return self.machine.list_queues()

    def transaction(self, transaction_id: str) -> TxnOutcome | None:
        return self.machine.transaction(transaction_id)

    @property
    def transaction_retention_ms(self) -> int:
        return self.retention_ms

    def cluster_status(self) -> ClusterStatus:
        return leader_status(self._node_id, commit_index=self.index, applied_index=self.index)

    def leader(self) -> tuple[str | None, str | None]:
        status = self.cluster_status()
        return status.leader_id, status.leader_url

    def state_digest(self) -> StateDigest:
        return self.machine.digest()

    async def wait_for_activity(self, queue: str, timeout: float) -> None:
        await asyncio.sleep(min(timeout, 0.02))


def _conforms(backend: MachineBackend) -> Backend:
    return backend  # mypy checks that MachineBackend implements the Backend protocol
