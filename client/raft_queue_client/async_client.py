"""``AsyncClient``: the raft-queue HTTP API (docs/http-api.md) as typed coroutines.

What a retry means for each operation (see ``transport`` for when the client retries, and DESIGN.md):

- ``enqueue`` / ``enqueue_batch``: every message carries an idempotency key (the caller's, or a uuid4 the
  client generates once per call), and every attempt sends the identical body. A retry after an unknown
  outcome answers either "new" or ``duplicate=True`` with the original ``message_id``: either way the message
  is in the queue exactly once.
- ``ack`` / ``nack`` / ``extend``: safe to retry by construction; the client reports what the server says for
  the last attempt. A retried ack whose first attempt succeeded reports ``already_acked`` (``stale`` once the
  server has forgotten the receipt).
- ``transact`` and the interactive transaction calls: every attempt sends the identical body under the same
  transaction ID (and ``stage_seq``); the server answers a repeat with the recorded outcome (``duplicate=True``)
  and never applies a transaction twice.
- ``create_queue``: idempotent (``200`` for an identical queue); after an unknown outcome ``created`` may be
  False for a queue this call created.
- ``delete_queue``: after an attempt with an unknown outcome, a ``404 queue_not_found`` is taken as success
  (the earlier attempt deleted it); ``commit_index`` is then ``None``.
- ``receive`` (and ``consume``, which long-polls it): every call sends a ``receive_attempt_id`` (a uuid4 generated
  once per call), the same on every attempt: a retry after an unknown outcome gets the deliveries the lost attempt
  leased, not new ones.
- Reads are retried freely.
- ``healthy``, ``readiness`` and ``state_digest`` ask one node about itself: one attempt at the node named (the
  preferred one by default), no redirect, no retry elsewhere, since another node's answer would be wrong.

If the attempts run out, ``UnavailableError`` means nothing was applied; ``OutcomeUnknownError`` means it may
have been (it carries the idempotency keys, transaction ID or receive attempt ID to resend with).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from types import TracebackType
from typing import Self, TypeVar
from urllib.parse import quote

import aiohttp

from raft_queue_client import transactions, wire
from raft_queue_client.consumer import AsyncConsumer
from raft_queue_client.errors import (
    ClientClosedError,
    ProtocolError,
    QueueNotFound,
    TransactionAborted,
    TransactionNotPending,
    UnavailableError,
)
from raft_queue_client.leases import Lease, LeaseKeeper
from raft_queue_client.messages import AsyncMessage
from raft_queue_client.models import (
    BatchEnqueueResult,
    Body,
    ClusterStatus,
    Consistency,
    CreateQueueResult,
    DeleteQueueResult,
    EnqueuedMessage,
    EnqueueResult,
    OutgoingMessage,
    QueueInfo,
    Readiness,
    Receipts,
    ReceivedMessage,
    SettleOpResult,
    SettleOutcome,
    SettleResult,
    StateDigest,
    TransactionInfo,
    TransactionOp,
    TransactionResult,
    TransactionState,
    receipt_list,
)
from raft_queue_client.retry import RetryPolicy
from raft_queue_client.transactions import AsyncTransaction, EncodedOp, TransactionBegin, message_json
from raft_queue_client.transport import ApiReply, ApiRequest, RetryEvent, Transport

T = TypeVar("T")

__all__ = ["AsyncClient", "AsyncConsumer", "AsyncMessage", "AsyncTransaction", "Receipts"]


def _queue_path(name: str) -> str:
    return "/v1/queues/" + quote(name, safe="")


def _transaction_path(transaction_id: str) -> str:
    if not isinstance(transaction_id, str) or not transaction_id:
        raise ValueError(f"transaction_id must be a non-empty string, not {transaction_id!r}")
    return "/v1/transactions/" + quote(transaction_id, safe="")


def _new_key() -> str:
    return str(uuid.uuid4())


def _consistency_query(consistency: Consistency) -> tuple[tuple[str, str], ...]:
    if consistency == "linearizable":
        return ()  # the server's default
    if consistency == "local":
        return (("consistency", "local"),)
    raise ValueError(f"consistency must be 'linearizable' or 'local', not {consistency!r}")


class AsyncClient:
    """A client for a raft-queue cluster. Give it some or all of the nodes' base URLs.

    Use it as ``async with AsyncClient([...]) as client:`` or call ``close()``. An ``aiohttp.ClientSession``
    passed as ``session`` is used as is and not closed; otherwise the client makes one on first use (in the
    running event loop) and closes it in ``close()``.

    ``timeout_s`` bounds each attempt (a long poll gets ``wait_s`` more); ``max_attempts`` counts attempts per
    call; the backoff between them is exponential with jitter from ``backoff_initial_s`` up to
    ``backoff_max_s``, and never shorter than the server's ``Retry-After`` (capped at ``backoff_max_s``).
    ``on_retry`` is called before each retry (for logging or metrics).
    """

    def __init__(
        self,
        urls: Sequence[str],
        *,
        timeout_s: float = 10.0,
        max_attempts: int = 8,
        backoff_initial_s: float = 0.05,
        backoff_max_s: float = 2.0,
        session: aiohttp.ClientSession | None = None,
        on_retry: Callable[[RetryEvent], None] | None = None,
    ) -> None:
        self._session = session
        self._owns_session = session is None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False
        #: Open consumers, closed by ``close()``.
        self._consumers: set[AsyncConsumer] = set()
        #: Deliveries whose settling matters to a consumer or a ``process()`` block, by receipt: a settle that
        #: names only the receipt (a string, a transaction's ``AckOp``) still reaches their leases.
        self._tracked: dict[str, AsyncMessage] = {}
        self._prune_tracked_at = 1024
        self._transport = Transport(
            urls,
            timeout_s=timeout_s,
            policy=RetryPolicy(
                max_attempts=max_attempts, backoff_initial_s=backoff_initial_s, backoff_max_s=backoff_max_s
            ),
            get_session=self._get_session,
            on_retry=on_retry,
        )

    # --- lifecycle ----------------------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Closes the open consumers (their unconsumed messages are nacked), then the session the client made (not
        one it was given). Idempotent."""
        for consumer in list(self._consumers):
            await consumer.aclose()
        self._closed = True
        session, self._session = self._session, None
        if session is not None and self._owns_session:
            await session.close()

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def urls(self) -> tuple[str, ...]:
        """The configured node URLs, normalized."""
        return self._transport.urls

    @property
    def preferred_url(self) -> str:
        """The node the next request goes to first (the last known leader, if a node named one)."""
        return self._transport.preferred_url

    def _get_session(self) -> aiohttp.ClientSession:
        if self._closed:
            raise ClientClosedError("the client is closed")
        loop = asyncio.get_running_loop()
        if self._loop is None:
            self._loop = loop
        elif loop is not self._loop:
            raise RuntimeError("an AsyncClient belongs to the event loop it first ran in; make one per loop")
        if self._session is None:
            self._session = aiohttp.ClientSession(headers={"User-Agent": "raft-queue-client/0.1"})
        return self._session

    async def _send(self, request: ApiRequest) -> ApiReply:
        if self._closed:
            raise ClientClosedError("the client is closed")
        return await self._transport.send(request)

    @staticmethod
    def _expect(reply: ApiReply, into: type[T], *statuses: int) -> T:
        if not reply.ok:
            raise reply.error()
        if reply.status not in statuses:
            raise ProtocolError(
                f"{reply.node_url} answered {reply.status}; expected {' or '.join(map(str, statuses))}",
                status=reply.status,
                node_url=reply.node_url,
            )
        return wire.decode(reply.body, into, status=reply.status, node_url=reply.node_url)

    # --- queues -------------------------------------------------------------------------------------------

    async def create_queue(
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
        """Creates the queue, or confirms an identical one exists (``created=False``). Settings left ``None``
        take the server's defaults. Raises ``QueueExists`` if it exists with a different configuration."""
        config = {
            "visibility_timeout_s": visibility_timeout_s,
            "max_deliveries": max_deliveries,
            "dead_letter_queue": dead_letter_queue,
            "max_length": max_length,
            "dedup_window_s": dedup_window_s,
            "max_message_bytes": max_message_bytes,
        }
        body = wire.encode({k: v for k, v in config.items() if v is not None})
        reply = await self._send(ApiRequest("PUT", _queue_path(name), body=body))
        return self._expect(reply, CreateQueueResult, 200, 201)

    async def get_queue(self, name: str, *, consistency: Consistency = "linearizable") -> QueueInfo:
        """One queue's settings and counts. ``consistency="local"`` skips the read barrier (may be stale)."""
        query = _consistency_query(consistency)
        reply = await self._send(ApiRequest("GET", _queue_path(name), query=query, mutates=False))
        return self._expect(reply, QueueInfo, 200)

    async def list_queues(self, *, consistency: Consistency = "linearizable") -> list[QueueInfo]:
        """Every queue, sorted by name."""
        query = _consistency_query(consistency)
        reply = await self._send(ApiRequest("GET", "/v1/queues", query=query, mutates=False))
        return list(self._expect(reply, wire.QueueList, 200).queues)

    async def delete_queue(self, name: str) -> DeleteQueueResult:
        """Deletes the queue and its messages. Raises ``QueueNotFound`` if it does not exist, ``QueueInUse``
        if another queue dead-letters into it."""
        reply = await self._send(ApiRequest("DELETE", _queue_path(name)))
        if reply.after_unknown and not reply.ok:
            error = reply.error()
            if isinstance(error, QueueNotFound):
                return DeleteQueueResult(commit_index=None)  # an earlier attempt deleted it
            raise error
        deleted = self._expect(reply, wire.Deleted, 200)
        return DeleteQueueResult(commit_index=deleted.commit_index)

    # --- messages -----------------------------------------------------------------------------------------

    async def enqueue(
        self,
        queue: str,
        body: Body,
        *,
        attributes: Mapping[str, str] | None = None,
        delay_s: float | None = None,
        idempotency_key: str | None = None,
    ) -> EnqueueResult:
        """Enqueues one message (a text ``body`` is sent as ``"body"``, a bytes one as ``"body_base64"``; either is
        stored as bytes). Without ``idempotency_key`` the client generates one, so retries cannot
        enqueue it twice; ``duplicate=True`` means the key was already seen (maybe by this call's own earlier
        attempt) and nothing new was enqueued."""
        key = idempotency_key if idempotency_key is not None else _new_key()
        message = OutgoingMessage(body, attributes=attributes, delay_s=delay_s, idempotency_key=key)
        request = ApiRequest(
            "POST",
            _queue_path(queue) + "/messages",
            body=wire.encode(message_json(message, key)),
            idempotency_keys=(key,),
        )
        result = self._expect(await self._send(request), wire.Enqueued, 200, 201)
        return EnqueueResult(
            message_id=result.message_id,
            seq=result.seq,
            duplicate=result.duplicate,
            commit_index=result.commit_index,
            idempotency_key=key,
        )

    async def enqueue_batch(self, queue: str, messages: Sequence[OutgoingMessage]) -> BatchEnqueueResult:
        """Enqueues 1 to 1000 messages atomically (all or none). Messages without a key get a generated
        one."""
        keys = tuple(m.idempotency_key if m.idempotency_key is not None else _new_key() for m in messages)
        payload = {"messages": [message_json(m, k) for m, k in zip(messages, keys, strict=True)]}
        request = ApiRequest("POST", _queue_path(queue) + "/messages", body=wire.encode(payload), idempotency_keys=keys)
        reply = await self._send(request)
        result = self._expect(reply, wire.BatchEnqueued, 200, 201)
        if len(result.messages) != len(keys):
            raise ProtocolError(
                f"{reply.node_url} answered {len(result.messages)} results for {len(keys)} messages",
                status=reply.status,
                node_url=reply.node_url,
            )
        return BatchEnqueueResult(
            messages=tuple(
                EnqueuedMessage(message_id=m.message_id, seq=m.seq, duplicate=m.duplicate, idempotency_key=k)
                for m, k in zip(result.messages, keys, strict=True)
            ),
            commit_index=result.commit_index,
        )

    async def receive(
        self,
        queue: str,
        *,
        max_messages: int = 1,
        visibility_timeout_s: float | None = None,
        wait_s: float = 0,
        receive_attempt_id: str | None = None,
    ) -> list[AsyncMessage]:
        """Leases up to ``max_messages`` ready messages, oldest first. With ``wait_s > 0`` and nothing ready,
        waits up to that long for one (a long poll); an empty list means nothing became ready. Each message has
        ``body`` (text) and ``data`` (the exact bytes), and can settle itself (``await msg.ack()``,
        ``async with msg.process():``).

        Every attempt carries the same ``receive_attempt_id`` (the caller's, or a uuid4 generated once per call),
        so a retry after an unknown outcome returns the deliveries the lost attempt leased instead of leasing
        more. Pass the ID of an ``OutcomeUnknownError`` to collect what that call leased."""
        return await self._receive(
            queue,
            max_messages=max_messages,
            visibility_timeout_s=visibility_timeout_s,
            wait_s=wait_s,
            receive_attempt_id=receive_attempt_id,
            keeper=None,
            on_lease_lost=None,
        )

    async def _receive(
        self,
        queue: str,
        *,
        max_messages: int,
        visibility_timeout_s: float | None,
        wait_s: float,
        receive_attempt_id: str | None,
        keeper: LeaseKeeper | None,
        on_lease_lost: Callable[[AsyncMessage], None] | None,
    ) -> list[AsyncMessage]:
        attempt_id = receive_attempt_id if receive_attempt_id is not None else uuid.uuid4().hex
        payload: dict[str, object] = {"max_messages": max_messages, "wait_s": wait_s}
        if visibility_timeout_s is not None:
            payload["visibility_timeout_s"] = visibility_timeout_s
        payload["receive_attempt_id"] = attempt_id
        payload["body_encoding"] = "base64"
        request = ApiRequest(
            "POST",
            _queue_path(queue) + "/receive",
            body=wire.encode(payload),
            extra_timeout_s=max(float(wait_s), 0.0),
            receive_attempt_id=attempt_id,
        )
        sent_at = time.monotonic()
        reply = await self._send(request)
        received = self._expect(reply, wire.Received, 200).messages
        messages = []
        for d in received:
            if d.body_base64 is not None:
                data = d.body_base64
            elif d.body is not None:
                data = d.body.encode()
            else:
                raise ProtocolError(
                    f"{reply.node_url} answered a message without body or body_base64",
                    status=reply.status,
                    node_url=reply.node_url,
                )
            messages.append(
                AsyncMessage(
                    queue=queue,
                    message_id=d.message_id,
                    seq=d.seq,
                    body=data.decode("utf-8", errors="replace"),
                    data=data,
                    attributes=d.attributes,
                    receipt=d.receipt,
                    delivery_count=d.delivery_count,
                    enqueued_at=d.enqueued_at,
                    enqueued_at_ms=d.enqueued_at_ms,
                    lease_expires_at=d.lease_expires_at,
                    lease_expires_at_ms=d.lease_expires_at_ms,
                    _client=self,
                    _lease=Lease(sent_at, visibility_timeout_s),
                    _keeper=keeper,
                    _on_lease_lost=on_lease_lost,
                )
            )
        return messages

    def consume(
        self,
        queue: str,
        *,
        max_in_flight: int = 10,
        visibility_timeout_s: float | None = None,
        wait_s: float = 20.0,
        on_lease_lost: Callable[[AsyncMessage], None] | None = None,
    ) -> AsyncConsumer:
        """Messages of ``queue`` as they arrive: ``async for msg in client.consume("q"): async with msg.process():
        ...`` (better inside ``async with client.consume("q") as messages:``, which closes it on the spot).

        A background long poll (``wait_s`` per request, at most 20) keeps at most ``max_in_flight`` messages
        leased and unsettled, counting those handed out and not yet settled. Leases are ``visibility_timeout_s``
        long (default: the queue's, read once); the consumer extends those of messages waiting to be handed out
        and of messages inside ``process()`` when a third of that is left. ``on_lease_lost(msg)`` is called (on
        the event loop) when an extend or the settle at the end of ``process()`` says a lease was lost (a warning
        is logged either way). Breaking out of the loop, closing the consumer or closing the client stops it and
        nacks the messages it received but had not handed out. Errors of ``receive`` (after its retries) are
        raised from the loop."""
        consumer = AsyncConsumer(
            self,
            queue,
            max_in_flight=max_in_flight,
            visibility_timeout_s=visibility_timeout_s,
            wait_s=wait_s,
            on_lease_lost=on_lease_lost,
        )
        if self._closed:
            raise ClientClosedError("the client is closed")
        self._consumers.add(consumer)
        return consumer

    def _track(self, message: AsyncMessage) -> None:
        """Lets settles by receipt reach ``message``'s lease until it is settled or lost."""
        if message._lease.done or message.receipt in self._tracked:
            return
        if len(self._tracked) >= self._prune_tracked_at:  # drop deliveries nobody settled whose lease ran out
            now = time.monotonic()
            self._tracked = {r: m for r, m in self._tracked.items() if not m._lease.expired(now)}
            self._prune_tracked_at = max(1024, 2 * len(self._tracked))
        self._tracked[message.receipt] = message

        def untrack() -> None:
            self._tracked.pop(message.receipt, None)

        message._lease.on_done.append(untrack)

    def _record_settled(
        self,
        verb: str,
        items: Sequence[str | ReceivedMessage],
        outcomes: Sequence[SettleOutcome],
        sent_at: float,
        visibility_timeout_s: float | None = None,
    ) -> None:
        for item, outcome in zip(items, outcomes, strict=True):
            message = item if isinstance(item, AsyncMessage) else self._tracked.get(receipt_list(item)[0])
            if message is not None:
                message._lease.record(verb, outcome, sent_at, visibility_timeout_s)

    async def ack(self, queue: str, receipts: Receipts) -> list[SettleResult]:
        """Deletes the delivered messages. One result per receipt, in order (``acked``, ``stale``, ...)."""
        return await self._settle(queue, "ack", receipts, {})

    async def nack(self, queue: str, receipts: Receipts, *, delay_s: float | None = None) -> list[SettleResult]:
        """Makes the messages ready again (after ``delay_s``), or dead-letters those out of deliveries."""
        extra: dict[str, object] = {} if delay_s is None else {"delay_s": delay_s}
        return await self._settle(queue, "nack", receipts, extra)

    async def extend(self, queue: str, receipts: Receipts, *, visibility_timeout_s: float) -> list[SettleResult]:
        """Ends the leases ``visibility_timeout_s`` after the server applies the extend."""
        return await self._settle(queue, "extend", receipts, {"visibility_timeout_s": visibility_timeout_s})

    async def _settle(self, queue: str, verb: str, receipts: Receipts, extra: dict[str, object]) -> list[SettleResult]:
        receipt_strings = receipt_list(receipts)
        body = wire.encode({"receipts": receipt_strings, **extra})
        sent_at = time.monotonic()
        reply = await self._send(ApiRequest("POST", f"{_queue_path(queue)}/{verb}", body=body))
        results = self._expect(reply, wire.Settled, 200).results
        if len(results) != len(receipt_strings):
            raise ProtocolError(
                f"{reply.node_url} answered {len(results)} results for {len(receipt_strings)} receipts",
                status=reply.status,
                node_url=reply.node_url,
            )
        items = [receipts] if isinstance(receipts, str | ReceivedMessage) else list(receipts)
        vt = extra.get("visibility_timeout_s")
        self._record_settled(
            verb, items, [r.outcome for r in results], sent_at, vt if isinstance(vt, float | int) else None
        )
        return list(results)

    # --- transactions -------------------------------------------------------------------------------------

    async def transact(self, transaction_id: str, operations: Sequence[TransactionOp]) -> TransactionResult:
        """Applies ``operations`` (``EnqueueOp``, ``AckOp``, ``NackOp``, ``ExtendOp``, to any queues) atomically:
        all of them, or none.

        Returns the committed transaction, one result per op. ``duplicate=True``: it had already committed
        (this call's own lost attempt, or an earlier call with this ID) and nothing was applied now. Raises
        ``TransactionAborted`` when an op cannot apply (``failures`` says which and why; nothing applied),
        ``TransactionConflict`` when the ID was used for different ops, and ``OutcomeUnknownError`` only when the
        attempts run out: then send the same transaction again with the same ID to learn its outcome."""
        _transaction_path(transaction_id)  # validates the ID
        encoded = transactions.encode_ops(transaction_id, 0, operations)
        payload = {"transaction_id": transaction_id, "operations": [op.json for op in encoded]}
        request = ApiRequest(
            "POST",
            "/v1/transactions",
            body=wire.encode(payload),
            idempotency_keys=transactions.all_keys(encoded),
            transaction_id=transaction_id,
        )
        sent_at = time.monotonic()
        reply = await self._send(request)
        return self._record_transaction(self._committed(reply, transaction_id, encoded, strict=True), sent_at)

    def begin_transaction(self, transaction_id: str, timeout_s: float = 30.0) -> TransactionBegin:
        """Opens an interactive transaction, which aborts by itself ``timeout_s`` after it began unless
        committed. Await it for its handle (``stage`` ops, then ``commit`` or ``abort``), or use it as a context
        manager: ``async with client.begin_transaction("t-1") as txn: await txn.stage([...])`` commits when the
        block succeeds and aborts when it raises (the exception propagates).

        Beginning an ID that is pending already answers that transaction (``info.duplicate``); its handle
        numbers stage calls from 1 (see ``resume_transaction`` to continue another handle's numbering). An ID
        whose transaction is decided raises ``TransactionAborted`` or ``TransactionNotPending``."""
        return TransactionBegin(self._begin_transaction(transaction_id, timeout_s))

    async def _begin_transaction(self, transaction_id: str, timeout_s: float) -> AsyncTransaction:
        body = wire.encode({"timeout_s": timeout_s})
        path = _transaction_path(transaction_id)
        reply = await self._send(ApiRequest("PUT", path, body=body, transaction_id=transaction_id))
        info = self._pending(reply, transaction_id, 200, 201)
        return AsyncTransaction(self, transaction_id, info=info, knows_staged_ops=info.staged_ops == 0)

    def resume_transaction(self, transaction_id: str, *, next_stage_seq: int) -> AsyncTransaction:
        """A handle for a pending transaction begun elsewhere (another handle, another process), whose next stage
        call must send ``next_stage_seq``. Sends nothing."""
        _transaction_path(transaction_id)
        return AsyncTransaction(self, transaction_id, next_stage_seq=next_stage_seq)

    async def get_transaction(
        self, transaction_id: str, *, consistency: Consistency = "linearizable"
    ) -> TransactionInfo:
        """A transaction's status (``pending``, ``committed`` with its results, ``aborted`` with its reason).
        Raises ``TransactionNotFound`` for an unknown ID (or a decided one whose record was forgotten).
        ``consistency="local"`` skips the read barrier (any node answers from what it has applied; may be stale)."""
        path = _transaction_path(transaction_id)
        query = _consistency_query(consistency)
        reply = await self._send(ApiRequest("GET", path, query=query, mutates=False, transaction_id=transaction_id))
        outcome = self._expect(reply, wire.TxnOutcome, 200)
        return transactions.info_from(outcome, transaction_id)

    async def _stage_transaction(
        self, transaction_id: str, stage_seq: int, encoded: tuple[EncodedOp, ...]
    ) -> TransactionInfo:
        payload = {"stage_seq": stage_seq, "operations": [op.json for op in encoded]}
        request = ApiRequest(
            "POST",
            _transaction_path(transaction_id) + "/operations",
            body=wire.encode(payload),
            idempotency_keys=transactions.all_keys(encoded),
            transaction_id=transaction_id,
        )
        return self._pending(await self._send(request), transaction_id, 200)

    async def _commit_transaction(self, transaction_id: str, staged: tuple[EncodedOp, ...] | None) -> TransactionResult:
        path = _transaction_path(transaction_id) + "/commit"
        sent_at = time.monotonic()
        reply = await self._send(ApiRequest("POST", path, transaction_id=transaction_id))
        return self._record_transaction(self._committed(reply, transaction_id, staged, strict=False), sent_at)

    def _record_transaction(self, result: TransactionResult, sent_at: float) -> TransactionResult:
        """Lets the settles of a committed transaction reach the leases of tracked deliveries."""
        for op in result.results:
            if isinstance(op, SettleOpResult) and len(op.receipts) == len(op.outcomes):
                self._record_settled(op.op, op.receipts, op.outcomes, sent_at)
        return result

    async def _abort_transaction(self, transaction_id: str) -> TransactionInfo:
        path = _transaction_path(transaction_id) + "/abort"
        reply = await self._send(ApiRequest("POST", path, transaction_id=transaction_id))
        outcome = self._expect(reply, wire.TxnOutcome, 200)
        info = transactions.info_from(outcome, transaction_id)
        if info.status is not TransactionState.ABORTED:
            raise self._undecidable(reply, info)
        return info

    def _committed(
        self,
        reply: ApiReply,
        transaction_id: str,
        sent: tuple[EncodedOp, ...] | None,
        *,
        strict: bool,
    ) -> TransactionResult:
        outcome = self._expect(reply, wire.TxnOutcome, 200, 201)
        if outcome.status is not TransactionState.COMMITTED:
            raise self._undecidable(reply, transactions.info_from(outcome, transaction_id))
        return transactions.committed_result(
            outcome, transaction_id, sent, strict=strict, status=reply.status, node_url=reply.node_url
        )

    def _pending(self, reply: ApiReply, transaction_id: str, *statuses: int) -> TransactionInfo:
        info = transactions.info_from(self._expect(reply, wire.TxnOutcome, *statuses), transaction_id)
        if info.status is not TransactionState.PENDING:
            raise self._undecidable(reply, info)
        return info

    @staticmethod
    def _undecidable(reply: ApiReply, info: TransactionInfo) -> Exception:
        """The error for a success answer whose transaction is not in the state the call needs: aborted ->
        ``TransactionAborted`` (the server normally says so with a 409 itself), committed (an abort, a stage)
        -> ``TransactionNotPending``, pending (a commit) -> ``ProtocolError``."""
        what = f"transaction {info.transaction_id!r} is {info.status.value}"
        if info.status is TransactionState.ABORTED:
            return TransactionAborted(
                reply.status,
                "transaction_aborted",
                what,
                reason=info.reason,
                failures=info.failures,
                transaction_id=info.transaction_id,
                decided_index=info.decided_index,
                duplicate=info.duplicate,
                node_url=reply.node_url,
            )
        if info.status is TransactionState.COMMITTED:
            return TransactionNotPending(reply.status, "transaction_not_pending", what, node_url=reply.node_url)
        return ProtocolError(f"{reply.node_url}: {what}", status=reply.status, node_url=reply.node_url)

    # --- cluster ------------------------------------------------------------------------------------------

    async def cluster(self) -> ClusterStatus:
        """The preferred node's view of the cluster. Not redirected: any node answers for itself, which is
        what you want when there is no leader."""
        reply = await self._send(ApiRequest("GET", "/v1/cluster", mutates=False, redirect=False))
        return self._expect(reply, ClusterStatus, 200)

    async def leader_url(self) -> str | None:
        """The leader's HTTP URL as a node sees it now (``None`` if it knows none)."""
        return (await self.cluster()).leader_url

    # --- one node about itself ----------------------------------------------------------------------------
    # One attempt at the node named (``url``; the preferred node when ``None``): no redirect, no retry, no other
    # node, because the question is about that node (``Transport.send_to``). ``url`` may be any node's base URL,
    # configured or not.

    async def _ask_node(self, url: str | None, path: str) -> ApiReply:
        if self._closed:
            raise ClientClosedError("the client is closed")
        node = self._transport.preferred_url if url is None else url
        return await self._transport.send_to(node, ApiRequest("GET", path, mutates=False, redirect=False))

    async def healthy(self, url: str | None = None) -> bool:
        """Whether the node serves HTTP: True when ``GET /healthz`` answers ``200`` with the API's health
        document. A probe: False, not an exception, when the node cannot be reached or answers anything else.
        Raises only ``ClientClosedError`` (and ``ValueError`` for a ``url`` that is not an http(s) base URL)."""
        try:
            reply = await self._ask_node(url, "/healthz")
            if reply.status != 200:
                return False
            self._expect(reply, wire.Health, 200)
        except (UnavailableError, ProtocolError):
            return False
        return True

    async def readiness(self, url: str | None = None) -> Readiness:
        """The node's ``GET /readyz``: ``ready=True`` with its ``node_id``, ``leader_id``, ``applied_index`` and
        ``commit_index`` when it knows a leader and has applied what the leader committed; ``ready=False`` with the
        server's ``detail`` when it answers ``503 not_ready``. Raises ``UnavailableError`` (``attempts=1``) when the
        node cannot be reached or gives no answer, ``ProtocolError`` for an answer that is not the API's, and the
        problem's ``ApiError`` for any other problem."""
        reply = await self._ask_node(url, "/readyz")
        if reply.status == 503 and reply.problem is not None and reply.problem.code == "not_ready":
            return Readiness(ready=False, node_url=reply.node_url, detail=reply.problem.detail)
        ready = self._expect(reply, wire.Ready, 200)
        return Readiness(
            ready=True,
            node_url=reply.node_url,
            node_id=ready.node_id,
            leader_id=ready.leader_id,
            applied_index=ready.applied_index,
            commit_index=ready.commit_index,
        )

    async def state_digest(self, url: str | None = None) -> StateDigest:
        """The node's ``GET /v1/cluster/digest``: its applied index and a SHA-256 of its whole applied state;
        replicas at the same applied index must agree. Raises as ``readiness`` does."""
        return self._expect(await self._ask_node(url, "/v1/cluster/digest"), StateDigest, 200)
