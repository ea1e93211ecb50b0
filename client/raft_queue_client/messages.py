"""Messages that know their queue and client: ``AsyncMessage`` (from ``AsyncClient.receive``/``consume``) and its
blocking twin ``Message`` (from ``Client``). Both are ``ReceivedMessage``s, so everything that takes one (``ack``,
``AckOp``, ...) takes them.

``process()`` is aio-pika's ``message.process()``: the block's success acks the message, an exception nacks it (so
it is redelivered at once) and propagates, and while the block runs the lease is extended in the background. The
exception is re-raised, as aio-pika does, because a context manager that swallowed the handler's errors would hide
bugs and keep a broken consumer looping; a caller who wants to go on catches it in the loop, in plain sight.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Self

from raft_queue_client.errors import RaftQueueError
from raft_queue_client.leases import Lease, LeaseKeeper, report_lost
from raft_queue_client.models import ReceivedMessage, SettleOutcome, SettleResult

if TYPE_CHECKING:
    from collections.abc import Callable

    from raft_queue_client.async_client import AsyncClient
    from raft_queue_client.sync_client import Client

log = logging.getLogger("raft_queue_client")


@dataclass(frozen=True, slots=True, kw_only=True)
class AsyncMessage(ReceivedMessage):
    """A delivery that can settle itself: ``await msg.ack()``, ``nack``, ``extend``, ``async with msg.process()``."""

    _client: AsyncClient = field(repr=False, compare=False)
    _lease: Lease = field(repr=False, compare=False)
    #: The consumer's keeper (``None`` for a message from ``receive``: ``process()`` then makes its own).
    _keeper: LeaseKeeper | None = field(default=None, repr=False, compare=False)
    _on_lease_lost: Callable[[AsyncMessage], None] | None = field(default=None, repr=False, compare=False)

    @property
    def settled(self) -> SettleOutcome | None:
        """How this client settled the delivery (``acked``, ``nacked``, ...), or ``None``."""
        return self._lease.settled

    @property
    def lease_lost(self) -> SettleOutcome | None:
        """``stale`` or ``invalid`` once a settle or extend of this delivery said it was no longer ours."""
        return self._lease.lost

    async def ack(self) -> SettleResult:
        """Deletes the message (``client.ack(queue, msg)``)."""
        [result] = await self._client.ack(self.queue, self)
        return result

    async def nack(self, *, delay_s: float | None = None) -> SettleResult:
        """Makes the message ready again after ``delay_s`` (default at once), or dead-letters it."""
        [result] = await self._client.nack(self.queue, self, delay_s=delay_s)
        return result

    async def extend(self, *, visibility_timeout_s: float) -> SettleResult:
        """Makes the lease end ``visibility_timeout_s`` after the server applies this."""
        [result] = await self._client.extend(self.queue, self, visibility_timeout_s=visibility_timeout_s)
        return result

    @asynccontextmanager
    async def process(self) -> AsyncIterator[Self]:
        """Acks when the block succeeds, nacks when it raises (and re-raises), and extends the lease while it runs.

        If the block settled the message itself (``ack``, ``nack``, an ``AckOp`` in a committed transaction),
        nothing more is sent. A settle at the end that answers ``stale`` (the lease was lost) is logged and given to
        the consumer's ``on_lease_lost``; it does not raise, since the block's work is done and redelivery is what
        at-least-once promises. A failed nack on the error path is logged and the block's exception propagates."""
        processing = Processing(self)
        processing.start()
        try:
            yield self
        except BaseException:
            await processing.finish(failed=True)
            raise
        await processing.finish(failed=False)


class Processing:
    """The two halves of ``process()``, so that the blocking twin can run each on the client's loop."""

    def __init__(self, message: AsyncMessage) -> None:
        self._message = message
        # The consumer's keeper while the consumer runs; after it closed (or for a message from receive), one of
        # the block's own.
        shared = message._keeper if message._keeper is not None and not message._keeper.closed else None
        self._own_keeper = shared is None
        self._keeper = shared or LeaseKeeper(message._client, message.queue)

    def start(self) -> None:
        self._message._client._track(self._message)
        self._keeper.hold(self._message)

    async def finish(self, *, failed: bool) -> None:
        message = self._message
        self._keeper.release(message)
        if self._own_keeper:
            await self._keeper.close()
        if message._lease.done:
            return
        try:
            await (message.nack() if failed else message.ack())
        except RaftQueueError as exc:
            if not failed:
                raise
            log.warning(
                "nacking message %s of queue %r after its handler failed: %s", message.message_id, message.queue, exc
            )
            return
        if message._lease.lost is not None:
            report_lost(message, "nacking" if failed else "acking")


@dataclass(frozen=True, slots=True, kw_only=True)
class Message(ReceivedMessage):
    """The blocking twin of ``AsyncMessage``: ``msg.ack()``, ``nack``, ``extend``, ``with msg.process():``. The
    background extension runs on the ``Client``'s event loop thread."""

    _client: Client = field(repr=False, compare=False)
    _async: AsyncMessage = field(repr=False, compare=False)

    @classmethod
    def of(cls, client: Client, message: AsyncMessage) -> Message:
        """The blocking twin of ``message`` (same delivery, same lease)."""
        values = {f.name: getattr(message, f.name) for f in fields(ReceivedMessage)}
        return cls(**values, _client=client, _async=message)

    @property
    def settled(self) -> SettleOutcome | None:
        return self._async.settled

    @property
    def lease_lost(self) -> SettleOutcome | None:
        return self._async.lease_lost

    def ack(self) -> SettleResult:
        return self._client._call(self._async.ack())

    def nack(self, *, delay_s: float | None = None) -> SettleResult:
        return self._client._call(self._async.nack(delay_s=delay_s))

    def extend(self, *, visibility_timeout_s: float) -> SettleResult:
        return self._client._call(self._async.extend(visibility_timeout_s=visibility_timeout_s))

    @contextmanager
    def process(self) -> Iterator[Self]:
        """As ``AsyncMessage.process``: ack on success, nack and re-raise on an exception, lease kept meanwhile."""
        processing = Processing(self._async)
        self._client._call(_start(processing))
        try:
            yield self
        except BaseException:
            self._client._call(processing.finish(failed=True))
            raise
        self._client._call(processing.finish(failed=False))


async def _start(processing: Processing) -> None:
    processing.start()  # on the client's loop, where the keeper's task must live
