"""``Client``: the blocking twin of ``AsyncClient``.

It runs its own event loop in a background thread and hands each call to it, so it works from any thread,
including from code that already runs an event loop elsewhere (the call blocks that thread, as any blocking
call does). Same methods, same errors, same retry rules as ``AsyncClient``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Callable, Coroutine, Mapping, Sequence
from types import TracebackType
from typing import Any, Self, TypeVar

from raft_queue_client.async_client import AsyncClient, AsyncTransaction, Receipts
from raft_queue_client.consumer import AsyncConsumer, Consumer
from raft_queue_client.errors import ClientClosedError
from raft_queue_client.messages import AsyncMessage, Message
from raft_queue_client.models import (
    BatchEnqueueResult,
    Body,
    ClusterStatus,
    Consistency,
    CreateQueueResult,
    DeleteQueueResult,
    EnqueueResult,
    OutgoingMessage,
    QueueInfo,
    Readiness,
    ReceivedMessage,
    SettleResult,
    StateDigest,
    TransactionInfo,
    TransactionOp,
    TransactionResult,
)
from raft_queue_client.transport import RetryEvent

T = TypeVar("T")


def _unwrap(receipts: Receipts) -> Receipts:
    """``Message``s as their ``AsyncMessage``s, so that a settle reaches their leases."""
    if isinstance(receipts, Message):
        return receipts._async
    if isinstance(receipts, str | ReceivedMessage):
        return receipts
    return [r._async if isinstance(r, Message) else r for r in receipts]


class Transaction:
    """The blocking twin of ``AsyncTransaction``: an interactive transaction's handle, made by
    ``Client.begin_transaction`` (or ``resume_transaction``). Same numbering of stage calls, same rules; as a context
    manager (``with client.begin_transaction("t-1") as txn:``) it commits when the block succeeds and aborts when
    it raises."""

    def __init__(self, client: Client, handle: AsyncTransaction) -> None:
        self._client = client
        self._handle = handle

    @property
    def transaction_id(self) -> str:
        return self._handle.transaction_id

    @property
    def next_stage_seq(self) -> int:
        return self._handle.next_stage_seq

    @property
    def info(self) -> TransactionInfo | None:
        return self._handle.info

    @property
    def result(self) -> TransactionResult | None:
        return self._handle.result

    def __repr__(self) -> str:
        return f"Transaction({self.transaction_id!r}, next_stage_seq={self.next_stage_seq})"

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._client._call(self._handle.__aexit__(exc_type, exc, tb))

    def stage(self, operations: Sequence[TransactionOp]) -> TransactionInfo:
        return self._client._call(self._handle.stage(operations))

    def commit(self) -> TransactionResult:
        return self._client._call(self._handle.commit())

    def abort(self) -> TransactionInfo:
        return self._client._call(self._handle.abort())


class Client:
    """A blocking client for a raft-queue cluster. Use it as ``with Client([...]) as client:`` or call
    ``close()``, which stops its thread. ``on_retry`` runs on the client's thread."""

    def __init__(
        self,
        urls: Sequence[str],
        *,
        timeout_s: float = 10.0,
        max_attempts: int = 8,
        backoff_initial_s: float = 0.05,
        backoff_max_s: float = 2.0,
        on_retry: Callable[[RetryEvent], None] | None = None,
    ) -> None:
        # Built first: bad arguments raise before a thread exists.
        self._async = AsyncClient(
            urls,
            timeout_s=timeout_s,
            max_attempts=max_attempts,
            backoff_initial_s=backoff_initial_s,
            backoff_max_s=backoff_max_s,
            on_retry=on_retry,
        )
        self._lock = threading.Lock()
        self._closed = False
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run_loop, name="raft-queue-client", daemon=True)
        self._thread.start()

    def _run_loop(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_forever()

    def _call(self, coro: Coroutine[Any, Any, T]) -> T:
        with self._lock:
            if self._closed:
                coro.close()
                raise ClientClosedError("the client is closed")
            if threading.current_thread() is self._thread:
                coro.close()
                raise RuntimeError("a Client method was called from its own event loop thread (use AsyncClient)")
            future = asyncio.run_coroutine_threadsafe(coro, self._loop)
        try:
            return future.result()
        except concurrent.futures.CancelledError as exc:
            if self._closed:
                raise ClientClosedError("the client was closed while the call was running") from exc
            raise
        except BaseException:
            future.cancel()  # interrupted (e.g. KeyboardInterrupt): do not leave the call running
            raise

    # --- lifecycle ----------------------------------------------------------------------------------------

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        """Closes the session, cancels calls still running and stops the thread. Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        try:
            if threading.current_thread() is not self._thread:
                asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result()
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            if threading.current_thread() is not self._thread:
                self._thread.join()
                self._loop.close()

    async def _shutdown(self) -> None:
        await self._async.close()
        current = asyncio.current_task()
        pending = [t for t in asyncio.all_tasks() if t is not current]
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        await self._loop.shutdown_asyncgens()

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def urls(self) -> tuple[str, ...]:
        return self._async.urls

    @property
    def preferred_url(self) -> str:
        return self._async.preferred_url

    # --- the API (see AsyncClient for each method's contract) ---------------------------------------------

    def create_queue(
        self,
        name: str,
        *,
        visibility_timeout_s: float | None = None,
        max_deliveries: int | None = None,
        dead_letter_queue: str | None = None,
        max_length: int | None = None,
        dedup_window_s: float | None = None,
        max_message_bytes: int | None = None,
    ) -> CreateQueueResult:
        return self._call(
            self._async.create_queue(
                name,
                visibility_timeout_s=visibility_timeout_s,
                max_deliveries=max_deliveries,
                dead_letter_queue=dead_letter_queue,
                max_length=max_length,
                dedup_window_s=dedup_window_s,
                max_message_bytes=max_message_bytes,
            )
        )

    def get_queue(self, name: str, *, consistency: Consistency = "linearizable") -> QueueInfo:
        return self._call(self._async.get_queue(name, consistency=consistency))

    def list_queues(self, *, consistency: Consistency = "linearizable") -> list[QueueInfo]:
        return self._call(self._async.list_queues(consistency=consistency))

    def delete_queue(self, name: str) -> DeleteQueueResult:
        return self._call(self._async.delete_queue(name))

    def enqueue(
        self,
        queue: str,
        body: Body,
        *,
        attributes: Mapping[str, str] | None = None,
        delay_s: float | None = None,
        idempotency_key: str | None = None,
    ) -> EnqueueResult:
        return self._call(
            self._async.enqueue(queue, body, attributes=attributes, delay_s=delay_s, idempotency_key=idempotency_key)
        )

    def enqueue_batch(self, queue: str, messages: Sequence[OutgoingMessage]) -> BatchEnqueueResult:
        return self._call(self._async.enqueue_batch(queue, messages))

    def receive(
        self,
        queue: str,
        *,
        max_messages: int = 1,
        visibility_timeout_s: float | None = None,
        wait_s: float = 0,
        receive_attempt_id: str | None = None,
    ) -> list[Message]:
        messages = self._call(
            self._async.receive(
                queue,
                max_messages=max_messages,
                visibility_timeout_s=visibility_timeout_s,
                wait_s=wait_s,
                receive_attempt_id=receive_attempt_id,
            )
        )
        return [Message.of(self, m) for m in messages]

    def consume(
        self,
        queue: str,
        *,
        max_in_flight: int = 10,
        visibility_timeout_s: float | None = None,
        wait_s: float = 20.0,
        on_lease_lost: Callable[[Message], None] | None = None,
    ) -> Consumer:
        """``for msg in client.consume("q"): with msg.process(): ...``; see ``AsyncClient.consume``.
        ``on_lease_lost`` runs on the client's thread."""
        lost = None if on_lease_lost is None else self._wrap_lost(on_lease_lost)
        consumer = self._call(self._make_consumer(queue, max_in_flight, visibility_timeout_s, wait_s, lost))
        return Consumer(self, consumer)

    async def _make_consumer(
        self,
        queue: str,
        max_in_flight: int,
        visibility_timeout_s: float | None,
        wait_s: float,
        on_lease_lost: Callable[[AsyncMessage], None] | None,
    ) -> AsyncConsumer:
        return self._async.consume(
            queue,
            max_in_flight=max_in_flight,
            visibility_timeout_s=visibility_timeout_s,
            wait_s=wait_s,
            on_lease_lost=on_lease_lost,
        )

    def _wrap_lost(self, callback: Callable[[Message], None]) -> Callable[[AsyncMessage], None]:
        def on_lost(message: AsyncMessage) -> None:
            callback(Message.of(self, message))

        return on_lost

    def ack(self, queue: str, receipts: Receipts) -> list[SettleResult]:
        return self._call(self._async.ack(queue, _unwrap(receipts)))

    def nack(self, queue: str, receipts: Receipts, *, delay_s: float | None = None) -> list[SettleResult]:
        return self._call(self._async.nack(queue, _unwrap(receipts), delay_s=delay_s))

    def extend(self, queue: str, receipts: Receipts, *, visibility_timeout_s: float) -> list[SettleResult]:
        return self._call(self._async.extend(queue, _unwrap(receipts), visibility_timeout_s=visibility_timeout_s))

    def transact(self, transaction_id: str, operations: Sequence[TransactionOp]) -> TransactionResult:
        return self._call(self._async.transact(transaction_id, operations))

    def begin_transaction(self, transaction_id: str, timeout_s: float = 30.0) -> Transaction:
        return Transaction(self, self._call(self._async._begin_transaction(transaction_id, timeout_s)))

    def resume_transaction(self, transaction_id: str, *, next_stage_seq: int) -> Transaction:
        return Transaction(self, self._async.resume_transaction(transaction_id, next_stage_seq=next_stage_seq))

    def get_transaction(self, transaction_id: str, *, consistency: Consistency = "linearizable") -> TransactionInfo:
        return self._call(self._async.get_transaction(transaction_id, consistency=consistency))

    def cluster(self) -> ClusterStatus:
        return self._call(self._async.cluster())

    def leader_url(self) -> str | None:
        return self._call(self._async.leader_url())

    def healthy(self, url: str | None = None) -> bool:
        return self._call(self._async.healthy(url))

    def readiness(self, url: str | None = None) -> Readiness:
        return self._call(self._async.readiness(url))

    def state_digest(self, url: str | None = None) -> StateDigest:
        return self._call(self._async.state_digest(url))
