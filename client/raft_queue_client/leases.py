"""Leases the client keeps: what it knows of one delivery's lease (``Lease``), and ``LeaseKeeper``, the background
task that extends leases before they run out.

The client cannot read the server's clock, so a lease's end is estimated on the local monotonic clock from below:
a lease granted (or extended) by a request sent at ``t`` with visibility timeout ``v`` ends no earlier than
``t + v``, since the server applies the request after it was sent. The keeper extends a lease when a third of ``v``
is left of that estimate, which leaves two round trips' worth of slack for any lease longer than a few seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from raft_queue_client.errors import RaftQueueError
from raft_queue_client.models import SettleOutcome

if TYPE_CHECKING:
    from raft_queue_client.async_client import AsyncClient
    from raft_queue_client.messages import AsyncMessage

log = logging.getLogger("raft_queue_client")

#: Outcomes after which the delivery is settled (gone from the client's hands, as it asked).
SETTLED = frozenset(
    {SettleOutcome.ACKED, SettleOutcome.ALREADY_ACKED, SettleOutcome.NACKED, SettleOutcome.DEAD_LETTERED}
)
#: Outcomes that say the delivery was no longer this client's: its lease ran out or was superseded.
LOST = frozenset({SettleOutcome.STALE, SettleOutcome.INVALID})

#: The share of the visibility timeout left when the keeper extends a lease.
EXTEND_AT_REMAINING = 1 / 3


class Lease:
    """What the client knows of one delivery's lease (mutable; the message that owns it is frozen)."""

    __slots__ = ("granted_at", "length_s", "lost", "on_done", "settled")

    def __init__(self, granted_at: float, length_s: float | None) -> None:
        #: ``time.monotonic()`` when the request that granted or last extended the lease was sent.
        self.granted_at = granted_at
        #: Its visibility timeout, when known (``None``: the queue's default, not known yet).
        self.length_s = length_s
        #: How the client settled it (ack, nack).
        self.settled: SettleOutcome | None = None
        #: The outcome that said it was not this client's any more (``stale``, ``invalid``).
        self.lost: SettleOutcome | None = None
        #: Called once when the lease is settled or lost.
        self.on_done: list[Callable[[], None]] = []

    @property
    def done(self) -> bool:
        return self.settled is not None or self.lost is not None

    @property
    def ends_at(self) -> float:
        """The earliest the lease can end (monotonic clock); infinity while its length is unknown."""
        return math.inf if self.length_s is None else self.granted_at + self.length_s

    def expired(self, now: float) -> bool:
        return not self.done and self.ends_at <= now

    def record(self, verb: str, outcome: SettleOutcome, sent_at: float, visibility_timeout_s: float | None) -> None:
        """What a settle request (sent at ``sent_at``) answered for this delivery."""
        if self.done:
            return
        if outcome is SettleOutcome.EXTENDED:
            if visibility_timeout_s is not None:  # else (a transaction's extend) the old estimate still holds
                self.granted_at, self.length_s = sent_at, visibility_timeout_s
            return
        if outcome in SETTLED:
            self.settled = outcome
        elif outcome in LOST:
            self.lost = outcome
        else:  # an unknown outcome for this verb: leave the lease as it is
            return
        callbacks, self.on_done = self.on_done, []
        for callback in callbacks:
            callback()


def report_lost(message: AsyncMessage, doing: str) -> None:
    """Says that a delivery's lease was lost where nobody else would see it (the background extension, the settle
    at the end of ``process()``), and tells the message's ``on_lease_lost``."""
    lease = message._lease
    log.warning(
        "%s of message %s (queue %r, delivery %d) answered %s: the lease was lost, the message will be (or was) "
        "delivered again",
        doing,
        message.message_id,
        message.queue,
        message.delivery_count,
        lease.lost,
    )
    if message._on_lease_lost is not None:
        message._on_lease_lost(message)


class LeaseKeeper:
    """Keeps the leases of the messages it holds: one task wakes when the first of them has a third of its
    visibility timeout left and extends every due one of the same timeout in one ``extend`` call. A lease the
    server calls ``stale`` or ``invalid`` is reported (``report_lost``) and dropped; a failed extend call is logged
    and tried again shortly."""

    def __init__(self, client: AsyncClient, queue: str) -> None:
        self._client = client
        self._queue = queue
        self._held: dict[str, AsyncMessage] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._default_length_s: float | None = None
        self._closed = False

    @property
    def closed(self) -> bool:
        return self._closed

    def hold(self, message: AsyncMessage) -> None:
        if message._lease.done or self._closed:
            return
        self._held[message.receipt] = message
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(
                self._run(), name=f"raft-queue lease keeper {self._queue}"
            )
        self._wake.set()

    def release(self, message: AsyncMessage) -> None:
        self._held.pop(message.receipt, None)

    async def close(self) -> None:
        """Stops the task (an extend in flight is cancelled; its lease keeps the end it had). It holds nothing
        after this."""
        self._closed = True
        self._held.clear()
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def _run(self) -> None:
        while True:
            try:
                due = await self._due()
            except RaftQueueError as exc:
                log.warning("reading the visibility timeout of queue %r failed (will try again): %s", self._queue, exc)
                await asyncio.sleep(1.0)  # a pause before the next try, not a wait for a condition
                continue
            if due:
                for length_s, messages in due.items():
                    await self._extend(messages, length_s)
                continue
            self._wake.clear()
            now = time.monotonic()
            first = min((self._extend_at(m) for m in self._held.values()), default=math.inf)
            if first > now:
                with contextlib.suppress(TimeoutError):  # asyncio.timeout: see AsyncConsumer._free_slots
                    async with asyncio.timeout(None if first == math.inf else first - now):
                        await self._wake.wait()

    @staticmethod
    def _extend_at(message: AsyncMessage) -> float:
        lease = message._lease
        assert lease.length_s is not None
        return lease.ends_at - lease.length_s * EXTEND_AT_REMAINING

    async def _due(self) -> dict[float, list[AsyncMessage]]:
        """The held messages whose leases are due an extension, by visibility timeout; drops settled ones."""
        now = time.monotonic()
        due: dict[float, list[AsyncMessage]] = {}
        for receipt, message in list(self._held.items()):
            lease = message._lease
            if lease.done:
                del self._held[receipt]
                continue
            if lease.length_s is None:
                lease.length_s = await self._queue_default_length()
            if self._extend_at(message) <= now:
                due.setdefault(lease.length_s, []).append(message)
        return due

    async def _queue_default_length(self) -> float:
        """The queue's visibility timeout, for leases granted without one (read once, from any node)."""
        if self._default_length_s is None:
            info = await self._client.get_queue(self._queue, consistency="local")
            self._default_length_s = info.config.visibility_timeout_s
        return self._default_length_s

    async def _extend(self, messages: list[AsyncMessage], length_s: float) -> None:
        try:
            await self._client.extend(self._queue, messages, visibility_timeout_s=length_s)
        except RaftQueueError as exc:
            log.warning("extending %d leases of queue %r failed (will try again): %s", len(messages), self._queue, exc)
            await asyncio.sleep(min(1.0, length_s / 10))  # a pause before the next try, not a wait for a condition
            return
        for message in messages:
            if message._lease.lost is not None:
                self._held.pop(message.receipt, None)
                report_lost(message, "extending the lease")
