"""The raft-queue client: ``AsyncClient`` (asyncio) and ``Client`` (blocking), typed results and errors.

It depends on aiohttp and msgspec only, not on the server's packages, so applications can use it alone.

    async with AsyncClient(["http://127.0.0.1:8001", "http://127.0.0.1:8002"]) as client:
        await client.create_queue("orders")
        await client.enqueue("orders", "hello")
        for message in await client.receive("orders", wait_s=5):
            await client.ack("orders", message)

See ``raft_queue/client/DESIGN.md`` for the retry rules.
"""

from raft_queue.client.async_client import AsyncClient, Receipts
from raft_queue.client.errors import (
    ApiError,
    ClientClosedError,
    DeadLetterQueueNotFound,
    IdempotencyKeyConflict,
    InternalServerError,
    InvalidRequest,
    MessageTooLarge,
    MethodNotAllowed,
    OutcomeUnknownError,
    ProtocolError,
    QueueExists,
    QueueFull,
    QueueInUse,
    QueueNotFound,
    RaftQueueError,
    RequestTooLarge,
    RouteNotFound,
    ServiceUnavailable,
    UnavailableError,
)
from raft_queue.client.models import (
    BatchEnqueueResult,
    ClusterStatus,
    Consistency,
    CreateQueueResult,
    DeleteQueueResult,
    EnqueuedMessage,
    EnqueueResult,
    Member,
    OutgoingMessage,
    QueueConfig,
    QueueCounts,
    QueueInfo,
    ReceivedMessage,
    SettleOutcome,
    SettleResult,
)
from raft_queue.client.retry import RetryPolicy
from raft_queue.client.sync_client import Client
from raft_queue.client.transport import RetryEvent

__all__ = [
    "ApiError",
    "AsyncClient",
    "BatchEnqueueResult",
    "Client",
    "ClientClosedError",
    "ClusterStatus",
    "Consistency",
    "CreateQueueResult",
    "DeadLetterQueueNotFound",
    "DeleteQueueResult",
    "EnqueueResult",
    "EnqueuedMessage",
    "IdempotencyKeyConflict",
    "InternalServerError",
    "InvalidRequest",
    "Member",
    "MessageTooLarge",
    "MethodNotAllowed",
    "OutcomeUnknownError",
    "OutgoingMessage",
    "ProtocolError",
    "QueueConfig",
    "QueueCounts",
    "QueueExists",
    "QueueFull",
    "QueueInUse",
    "QueueInfo",
    "QueueNotFound",
    "RaftQueueError",
    "Receipts",
    "ReceivedMessage",
    "RequestTooLarge",
    "RetryEvent",
    "RetryPolicy",
    "RouteNotFound",
    "ServiceUnavailable",
    "SettleOutcome",
    "SettleResult",
    "UnavailableError",
]
