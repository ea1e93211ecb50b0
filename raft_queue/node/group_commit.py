"""GroupCommitter: packs the operations that arrive while entries are in flight into the next log entry.

One entry means one journal fsync per node and one Raft round trip for many operations. A lone request is
proposed at once (pysyncobj runs with ``appendEntriesUseBatch=False``, so it is sent without waiting for a
timer); under load, requests queue here while ``max_inflight`` entries are replicating and then go out
together. Results come back per operation, in order, from the entry's apply on this node.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from raft_queue.node.raft.failures import SUCCESS, failure_for
from state_machine.commands import Command, Entry, encode_entry
from state_machine.contract import Applied, OutcomeUnknown, Overloaded, ReplicationError
from state_machine.machine import AppliedEntry

#: Operations packed into one entry stop at about this many bytes (one operation bigger than this still goes,
#: alone). 1 MiB entries did not lower a leader's peak memory measurably (bench memory: 392 vs 384 MiB) and
#: cost throughput, so entries stay large.
MAX_ENTRY_BYTES = 8 * 1024 * 1024

#: How long after the last waiter of an entry gave up the committer frees its slot (a late callback is ignored).
ABANDON_GRACE_S = 0.0

Propose = Callable[[bytes, Callable[[Any, int], None]], None]


class _Pending:
    __slots__ = ("deadline", "future", "op", "size")

    def __init__(self, op: Command, size: int, future: asyncio.Future[Applied], deadline: float) -> None:
        self.op = op
        self.size = size
        self.future = future
        self.deadline = deadline


class _Batch:
    """One proposed entry. ``settled`` once its callback came, or once every waiter gave up on it."""

    __slots__ = ("give_up", "items", "settled")

    def __init__(self, items: list[_Pending]) -> None:
        self.items = items
        self.settled = False
        self.give_up: asyncio.TimerHandle | None = None

    def finish(self) -> list[_Pending]:
        """Marks the entry settled and lets go of it: the give-up timer would otherwise keep every message body
        of an answered entry alive until the request timeout (measured: ~150,000 bodies, the bulk of a loaded
        leader's memory)."""
        self.settled = True
        if self.give_up is not None:
            self.give_up.cancel()
            self.give_up = None
        items, self.items = self.items, []
        return items


def _estimate(op: Command) -> int:
    """An upper-bound-ish size of the op's encoding: what it carries, plus framing."""
    size = 64 + len(getattr(op, "queue", "") or getattr(op, "name", ""))
    for m in getattr(op, "messages", ()):
        size += 64 + len(m.body) + len(m.message_id) + len(m.idempotency_key or "") + len(m.fingerprint)
        size += sum(len(k) + len(v) + 8 for k, v in m.attributes.items())
    size += sum(len(r) + 4 for r in getattr(op, "receipts", ()))
    return size


def _consume(f: asyncio.Future[Applied]) -> None:
    """Marks a failure as retrieved: the submitter may have timed out and stopped listening."""
    if not f.cancelled():
        f.exception()


def _finished(f: asyncio.Future[Applied], timer: asyncio.TimerHandle) -> None:
    timer.cancel()
    _consume(f)


class GroupCommitter:
    def __init__(
        self,
        propose: Propose,
        loop: asyncio.AbstractEventLoop,
        *,
        max_inflight: int = 4,
        max_ops: int = 2000,
        max_bytes: int = MAX_ENTRY_BYTES,
        max_pending: int = 50_000,
        clock_ms: Callable[[], int] = lambda: int(time.time() * 1000),
    ) -> None:
        self._propose = propose
        self._loop = loop
        self._max_inflight = max_inflight
        self._max_ops = max_ops
        self._max_bytes = max_bytes
        self._max_pending = max_pending
        self._clock_ms = clock_ms
        self._pending: deque[_Pending] = deque()
        #: Proposed entries not yet settled; their number is bounded by ``max_inflight``.
        self._in_flight: set[_Batch] = set()
        self._scheduled = False
        self.entries_proposed = 0
        self.ops_proposed = 0
        self.entries_abandoned = 0

    async def submit(self, op: Command, timeout: float) -> Applied:
        if len(self._pending) >= self._max_pending:
            raise Overloaded("too many operations waiting to be proposed")
        item = _Pending(op, _estimate(op), self._loop.create_future(), self._loop.time() + timeout)
        # One timer per operation, cancelled when its result comes (cheaper than wait_for + shield, which cost
        # two extra futures and a task wake-up per request on the event loop thread).
        timer = self._loop.call_at(item.deadline, self._expire, item, timeout)
        item.future.add_done_callback(lambda f: _finished(f, timer))
        self._pending.append(item)
        self._schedule()
        return await item.future

    def _expire(self, item: _Pending, timeout: float) -> None:
        if item.future.done():
            return
        if item in self._pending:  # never proposed: certainly not applied
            self._pending.remove(item)
            item.future.set_exception(Overloaded("timed out before the operation could be proposed"))
        else:
            item.future.set_exception(OutcomeUnknown(f"no result within {timeout:g} s; the operation may still commit"))

    def _schedule(self) -> None:
        # Let every request that arrives in this loop iteration join the same entry.
        if not self._scheduled and len(self._in_flight) < self._max_inflight:
            self._scheduled = True
            self._loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._scheduled = False
        while self._pending and len(self._in_flight) < self._max_inflight:
            batch = self._take_batch()
            if not batch:
                break
            self._propose_batch(batch)

    def _take_batch(self) -> list[_Pending]:
        """The next entry's operations, oldest first: at most ``max_ops``, and at most ``max_bytes`` unless one
        operation alone is bigger. An operation whose waiter was cancelled before it was proposed is dropped."""
        batch: list[_Pending] = []
        size = 0
        while self._pending and len(batch) < self._max_ops:
            nxt = self._pending[0]
            if nxt.future.done():  # its waiter was cancelled before it was proposed: never propose it
                self._pending.popleft()
                continue
            if batch and size + nxt.size > self._max_bytes:
                break
            batch.append(self._pending.popleft())
            size += nxt.size
        return batch

    def _propose_batch(self, batch: list[_Pending]) -> None:
        try:
            data = encode_entry(Entry(now_ms=self._clock_ms(), ops=[p.op for p in batch]))
        except Exception:  # an operation the edge should have refused: it alone fails, the others go on
            batch = _without_unencodable(batch)
            if not batch:
                return
            data = encode_entry(Entry(now_ms=self._clock_ms(), ops=[p.op for p in batch]))
        entry = _Batch(batch)
        self._in_flight.add(entry)
        self.entries_proposed += 1
        self.ops_proposed += len(batch)

        def done(result: Any, reason: int, entry: _Batch = entry) -> None:
            self._loop.call_soon_threadsafe(self._settle, entry, result, reason)

        try:
            self._propose(data, done)
        except ReplicationError as exc:  # refused before anything was proposed
            entry.settled = True
            self._in_flight.discard(entry)
            for p in batch:
                if not p.future.done():
                    p.future.set_exception(exc)
            return
        # pysyncobj can lose a callback (a forwarded command on a dropped connection is answered only if the
        # leader changes). Once every waiter has given up, free the slot so one lost callback cannot
        # stall every later write.
        give_up_at = max(p.deadline for p in batch) + ABANDON_GRACE_S
        entry.give_up = self._loop.call_at(give_up_at, self._abandon, entry)

    def _abandon(self, entry: _Batch, why: str = "no result from the Raft layer") -> None:
        if entry.settled:
            return
        items = entry.finish()
        self._in_flight.discard(entry)
        self.entries_abandoned += 1
        for p in items:
            if not p.future.done():
                p.future.set_exception(OutcomeUnknown(f"{why}; the operation may still commit"))
        self._schedule()

    def give_up_in_flight(self, why: str) -> None:
        """Answers every proposed, unanswered operation ``OutcomeUnknown`` now: the node lost contact with the
        ones that commit (raft_queue/DESIGN.md, "Fast answers"), so no result can come before contact is back,
        and the client is better off retrying elsewhere with its idempotency key than waiting out its timeout.
        A callback that still comes later is ignored (the entry is settled)."""
        for entry in list(self._in_flight):
            self._abandon(entry, why)

    def _settle(self, entry: _Batch, result: Any, reason: int) -> None:
        if entry.settled:  # abandoned earlier: its waiters already got 'outcome unknown'
            return
        batch = entry.finish()
        self._in_flight.discard(entry)
        if reason == SUCCESS and isinstance(result, AppliedEntry):
            _answer(batch, result)
        else:
            _fail(batch, reason)
        self._schedule()


def _without_unencodable(batch: list[_Pending]) -> list[_Pending]:
    """The operations of ``batch`` that encode on their own; each one that does not fails with its error. The edge
    validates every operation, so this keeps a bug's blast radius to its own request: once, a raw non-UTF-8 header
    failed the whole entry, and its innocent neighbours waited out their timeouts for a false 'outcome unknown'."""
    kept = []
    for p in batch:
        try:
            encode_entry(Entry(now_ms=0, ops=[p.op]))
        except Exception as exc:
            if not p.future.done():
                p.future.set_exception(exc)
            continue
        kept.append(p)
    return kept


def _answer(batch: list[_Pending], applied: AppliedEntry) -> None:
    """Each operation gets its own result; an entry that did not decode has one verdict for all of them."""
    decoded = len(applied.results) == len(batch)  # else the entry did not decode: one verdict for every operation
    results = applied.results if decoded else [applied.results[0]] * len(batch)
    for p, r in zip(batch, results, strict=True):
        if not p.future.done():
            p.future.set_result(Applied(result=r, commit_index=applied.index))


def _fail(batch: list[_Pending], reason: int) -> None:
    for p in batch:
        if not p.future.done():
            if reason == SUCCESS:
                # Committed, but this node had applied it before (replay): result unknown here.
                p.future.set_exception(OutcomeUnknown("committed, but its result was not observed"))
            else:
                p.future.set_exception(failure_for(reason))
