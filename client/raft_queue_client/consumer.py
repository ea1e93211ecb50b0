"""The consumer loop: ``async for msg in client.consume("q")`` (``AsyncConsumer``) and its blocking twin
``for msg in client.consume("q")`` (``Consumer``).

One background task long-polls ``receive`` for as many messages as there are free slots (``max_in_flight`` minus
the messages leased and not yet settled: waiting in the buffer, or handed out); the iterator hands them out one
at a time. A slot frees when its message is settled (``ack``/``nack``/``process()``, or an ``AckOp``/``NackOp`` of
a committed transaction through the same client), when the server says its lease is gone, or, for a handed-out
message nobody settles, when its lease has surely run out. The leases of buffered messages and of messages inside
``process()`` are extended by one ``LeaseKeeper``; a handed-out message outside ``process()`` is the caller's to
extend.

Closing (``aclose()``, leaving ``async with``, the client's ``close()``, or breaking out of ``async for``, which
drops the iterator and lets asyncio finalize it) cancels the long poll and the keeper and nacks the buffered
messages, so they are redelivered at once rather than after their lease. A long poll cut short may have leased
messages whose answer never arrived: those come back when their lease runs out.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator
from types import TracebackType
from typing import TYPE_CHECKING, Self

from raft_queue_client.errors import RaftQueueError
from raft_queue_client.leases import LeaseKeeper, log
from raft_queue_client.messages import AsyncMessage, Message

if TYPE_CHECKING:
    from raft_queue_client.async_client import AsyncClient
    from raft_queue_client.sync_client import Client

#: The longest long poll the API allows.
MAX_WAIT_S = 20.0
#: The most messages one receive may ask for.
MAX_RECEIVE = 1000


class AsyncConsumer:
    """Made by ``AsyncClient.consume``. Iterate it once (``async for``), preferably inside ``async with``: leaving
    the loop closes it. ``await consumer.next()`` takes one message without a loop."""

    def __init__(
        self,
        client: AsyncClient,
        queue: str,
        *,
        max_in_flight: int,
        visibility_timeout_s: float | None,
        wait_s: float,
        on_lease_lost: Callable[[AsyncMessage], None] | None,
    ) -> None:
        if max_in_flight < 1:
            raise ValueError(f"max_in_flight must be at least 1, not {max_in_flight}")
        if not 0 < wait_s <= MAX_WAIT_S:
            raise ValueError(f"wait_s must be more than 0 and at most {MAX_WAIT_S}, not {wait_s}")
        self._client = client
        self.queue = queue
        self.max_in_flight = max_in_flight
        self._visibility_timeout_s = visibility_timeout_s
        self._wait_s = wait_s
        self._on_lease_lost = on_lease_lost
        self._buffer: deque[AsyncMessage] = deque()
        #: Leased and unsettled: buffered or handed out.
        self._held: dict[str, AsyncMessage] = {}
        self._changed = asyncio.Event()
        self._keeper: LeaseKeeper | None = None
        self._fetcher: asyncio.Task[None] | None = None
        self._error: BaseException | None = None
        self._closed = False
        self._close_lock = asyncio.Lock()

    @property
    def in_flight(self) -> int:
        """Messages leased and not settled (buffered or handed out)."""
        return len(self._held)

    @property
    def closed(self) -> bool:
        return self._closed

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    def __aiter__(self) -> AsyncIterator[AsyncMessage]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[AsyncMessage]:
        # A generator, not a bare __anext__: when a loop breaks out and drops it, asyncio finalizes it, which
        # closes the consumer.
        try:
            while True:
                yield await self.next()
        except StopAsyncIteration:
            return
        finally:
            await self.aclose()

    async def next(self) -> AsyncMessage:
        """The next message (waiting for one); ``StopAsyncIteration`` once closed. Raises what ``receive`` raised
        (after the client's own retries), e.g. ``QueueNotFound``; the consumer is then closed."""
        self._start()
        while True:
            if self._closed:
                raise StopAsyncIteration
            if self._buffer:
                message = self._buffer.popleft()
                assert self._keeper is not None
                self._keeper.release(message)  # the caller's now; process() holds it again
                return message
            if self._error is not None:
                error = self._error
                await self.aclose()
                raise error
            self._changed.clear()
            await self._changed.wait()

    async def aclose(self) -> None:
        """Stops the long poll and the lease keeper and nacks the messages not yet handed out. Idempotent."""
        async with self._close_lock:
            if self._closed:
                return
            self._closed = True
            self._changed.set()
            self._client._consumers.discard(self)
            fetcher, self._fetcher = self._fetcher, None
            if fetcher is not None:
                fetcher.cancel()
                await asyncio.gather(fetcher, return_exceptions=True)
            if self._keeper is not None:
                await self._keeper.close()
            buffered = [m for m in self._buffer if not m._lease.done]
            self._buffer.clear()
            if buffered and not self._client.closed:
                try:
                    await self._client.nack(self.queue, buffered)
                except RaftQueueError as exc:
                    log.warning("nacking %d unconsumed messages of queue %r failed: %s", len(buffered), self.queue, exc)

    def _start(self) -> None:
        if self._fetcher is None and not self._closed:
            self._keeper = LeaseKeeper(self._client, self.queue)
            self._fetcher = asyncio.get_running_loop().create_task(
                self._fetch(), name=f"raft-queue consumer {self.queue}"
            )

    async def _fetch(self) -> None:
        try:
            if self._visibility_timeout_s is None:
                info = await self._client.get_queue(self.queue, consistency="local")
                self._visibility_timeout_s = info.config.visibility_timeout_s
            while True:
                free = await self._free_slots()
                messages = await self._client._receive(
                    self.queue,
                    max_messages=min(free, MAX_RECEIVE),
                    visibility_timeout_s=self._visibility_timeout_s,
                    wait_s=self._wait_s,
                    receive_attempt_id=None,
                    keeper=self._keeper,
                    on_lease_lost=self._on_lease_lost,
                )
                for message in messages:
                    self._hold(message)
                if messages:
                    self._changed.set()
        except Exception as exc:  # handed to the iterating caller
            self._error = exc
            self._changed.set()

    def _hold(self, message: AsyncMessage) -> None:
        self._held[message.receipt] = message
        message._lease.on_done.append(lambda: self._release(message))
        self._client._track(message)
        assert self._keeper is not None
        self._keeper.hold(message)
        self._buffer.append(message)

    def _release(self, message: AsyncMessage) -> None:
        self._held.pop(message.receipt, None)
        self._changed.set()

    async def _free_slots(self) -> int:
        """Waits for a free slot; returns how many are free. Drops handed-out messages whose lease surely ended."""
        while True:
            now = time.monotonic()
            for receipt, message in list(self._held.items()):
                if message._lease.expired(now):
                    del self._held[receipt]
            free = self.max_in_flight - len(self._held)
            if free > 0:
                return free
            first_end = min(m._lease.ends_at for m in self._held.values())
            self._changed.clear()
            # asyncio.timeout, not wait_for: before Python 3.12 wait_for can swallow a cancellation that arrives
            # as the event is set (aclose does both), and the task would run on.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(first_end - now, 0.0)):
                    await self._changed.wait()


class Consumer:
    """The blocking twin of ``AsyncConsumer``, made by ``Client.consume``: ``for msg in consumer`` (or
    ``with client.consume(...) as consumer:``). Iterate it once: leaving the loop (dropping the iterator) closes
    it. Its long poll and lease keeper run on the client's thread."""

    def __init__(self, client: Client, consumer: AsyncConsumer) -> None:
        self._client = client
        self._async = consumer

    @property
    def queue(self) -> str:
        return self._async.queue

    @property
    def in_flight(self) -> int:
        return self._async.in_flight

    @property
    def closed(self) -> bool:
        return self._async.closed

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __iter__(self) -> Iterator[Message]:
        # A generator: breaking out of a for loop drops it, and its finally closes the consumer.
        try:
            while True:
                try:
                    message = self._client._call(self._async.next())
                except StopAsyncIteration:
                    return
                yield Message.of(self._client, message)
        finally:
            self.close()

    def close(self) -> None:
        """As ``AsyncConsumer.aclose``. Idempotent; a no-op once the client is closed (which closed it)."""
        if not self._client.closed and not self._async.closed:
            self._client._call(self._async.aclose())
