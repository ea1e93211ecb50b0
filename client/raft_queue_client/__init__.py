"""The raft-queue client: ``AsyncClient`` (asyncio) and ``Client`` (blocking), typed results and errors.

It depends on aiohttp and msgspec only, not on the server's packages, so applications can use it alone.

    async with AsyncClient(["http://127.0.0.1:8001", "http://127.0.0.1:8002"]) as client:
        await client.create_queue("orders")
        await client.enqueue("orders", "hello")          # text; bytes bodies work too
        async with client.consume("orders", max_in_flight=10) as messages:
            async for message in messages:
                async with message.process():            # ack on success, nack on an exception, lease kept
                    handle(message.data)
        # Atomically: ack what was processed and enqueue what it produced, to any queues.
        await client.transact("txn-42", [AckOp("orders", message), EnqueueOp("invoices", ["invoice 42"])])

See ``DESIGN.md`` beside this module (``client/raft_queue_client/DESIGN.md`` in the repository) for the retry
rules.
"""

from raft_queue_client.async_client import AsyncClient, AsyncTransaction, Receipts
from raft_queue_client.consumer import AsyncConsumer, Consumer
from raft_queue_client.errors import (
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
    TransactionAborted,
    TransactionConflict,
    TransactionError,
    TransactionExists,
    TransactionNotFound,
    TransactionNotPending,
    UnavailableError,
)
from raft_queue_client.messages import AsyncMessage, Message
from raft_queue_client.models import (
    AckOp,
    BatchEnqueueResult,
    Body,
    ClusterStatus,
    Consistency,
    CreateQueueResult,
    DeleteQueueResult,
    EnqueuedMessage,
    EnqueueOp,
    EnqueueOpResult,
    EnqueueResult,
    ExtendOp,
    Member,
    NackOp,
    OutgoingMessage,
    QueueConfig,
    QueueCounts,
    QueueInfo,
    Readiness,
    ReceivedMessage,
    SettleOpResult,
    SettleOutcome,
    SettleResult,
    StateDigest,
    TransactionFailure,
    TransactionInfo,
    TransactionMessage,
    TransactionOp,
    TransactionOpResult,
    TransactionResult,
    TransactionState,
)
from raft_queue_client.retry import RetryPolicy
from raft_queue_client.sync_client import Client, Transaction
from raft_queue_client.transactions import TransactionBegin
from raft_queue_client.transport import RetryEvent

__all__ = [
    "AckOp",
    "ApiError",
    "AsyncClient",
    "AsyncConsumer",
    "AsyncMessage",
    "AsyncTransaction",
    "BatchEnqueueResult",
    "Body",
    "Client",
    "ClientClosedError",
    "ClusterStatus",
    "Consistency",
    "Consumer",
    "CreateQueueResult",
    "DeadLetterQueueNotFound",
    "DeleteQueueResult",
    "EnqueueOp",
    "EnqueueOpResult",
    "EnqueueResult",
    "EnqueuedMessage",
    "ExtendOp",
    "IdempotencyKeyConflict",
    "InternalServerError",
    "InvalidRequest",
    "Member",
    "Message",
    "MessageTooLarge",
    "MethodNotAllowed",
    "NackOp",
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
    "Readiness",
    "Receipts",
    "ReceivedMessage",
    "RequestTooLarge",
    "RetryEvent",
    "RetryPolicy",
    "RouteNotFound",
    "ServiceUnavailable",
    "SettleOpResult",
    "SettleOutcome",
    "SettleResult",
    "StateDigest",
    "Transaction",
    "TransactionAborted",
    "TransactionBegin",
    "TransactionConflict",
    "TransactionError",
    "TransactionExists",
    "TransactionFailure",
    "TransactionInfo",
    "TransactionMessage",
    "TransactionNotFound",
    "TransactionNotPending",
    "TransactionOp",
    "TransactionOpResult",
    "TransactionResult",
    "TransactionState",
    "UnavailableError",
]
