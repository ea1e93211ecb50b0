"""Transactions: the ops as JSON, the answers as typed results, and ``AsyncTransaction``, the handle of an
interactive transaction.

A transaction is sent again, byte for byte, until an answer is the truth (see DESIGN.md): the server records a
decided transaction under its ID and answers a repeat with the recorded outcome (``duplicate: true``), never
applying it twice. For the repeat to be identical, an enqueued message without a caller's idempotency key gets one
*derived* from the transaction ID and the message's place (stage call, op, message), not a random one: then even
an application that resends the same transaction after ``OutcomeUnknownError`` (say, after a restart) sends the
same request, instead of one the server would refuse as a ``transaction_conflict``.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import uuid
from collections.abc import Coroutine, Generator, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, Self

from raft_queue_client import wire
from raft_queue_client.errors import ProtocolError, RaftQueueError
from raft_queue_client.models import (
    AckOp,
    EnqueueOp,
    EnqueueOpResult,
    ExtendOp,
    NackOp,
    OutgoingMessage,
    SettleOpResult,
    SettleOutcome,
    TransactionInfo,
    TransactionMessage,
    TransactionOp,
    TransactionOpResult,
    TransactionResult,
    TransactionState,
    receipt_list,
)

if TYPE_CHECKING:
    from raft_queue_client.async_client import AsyncClient

log = logging.getLogger("raft_queue_client")

#: The namespace of derived idempotency keys (uuid5).
_KEY_NAMESPACE = uuid.UUID("5f1d6a0e-4b0e-4d47-9a55-6b7f0c1e2d3a")


def derived_key(transaction_id: str, stage_seq: int, op_index: int, message_index: int) -> str:
    """The idempotency key of a message sent without one: a function of where it sits in the transaction
    (``stage_seq`` 0 for a one-shot transaction)."""
    return str(uuid.uuid5(_KEY_NAMESPACE, f"{transaction_id}\x00{stage_seq}\x00{op_index}\x00{message_index}"))


def message_json(message: OutgoingMessage, key: str) -> dict[str, object]:
    """One message as the enqueue endpoint (and an enqueue op) takes it: only what was given, plus the key. A text
    body is sent as ``"body"``, a bytes body as ``"body_base64"`` (standard base64, padded)."""
    body: dict[str, object]
    if isinstance(message.body, str):
        body = {"body": message.body, "idempotency_key": key}
    elif isinstance(message.body, bytes | bytearray | memoryview):
        body = {"body_base64": base64.b64encode(message.body).decode("ascii"), "idempotency_key": key}
    else:
        raise TypeError(f"a message body must be str or bytes, not {type(message.body).__name__}")
    if message.attributes is not None:
        body["attributes"] = dict(message.attributes)
    if message.delay_s is not None:
        body["delay_s"] = message.delay_s
    return body


SettleKind = Literal["ack", "nack", "extend"]


def _settle_kind(result: wire.TxnSettled) -> SettleKind:
    if isinstance(result, wire.TxnAcked):
        return "ack"
    return "nack" if isinstance(result, wire.TxnNacked) else "extend"


@dataclass(frozen=True, slots=True)
class EncodedOp:
    """One op as sent, and what the client needs to read its result."""

    kind: str
    json: dict[str, object]
    #: Enqueue: each message's key, in order.
    keys: tuple[str, ...] = ()
    #: Ack, nack, extend: the receipts, in order.
    receipts: tuple[str, ...] = ()


def encode_ops(transaction_id: str, stage_seq: int, operations: Sequence[TransactionOp]) -> tuple[EncodedOp, ...]:
    if isinstance(operations, EnqueueOp | AckOp | NackOp | ExtendOp):
        operations = [operations]
    encoded: list[EncodedOp] = []
    for index, op in enumerate(operations):
        if isinstance(op, EnqueueOp):
            messages = [m if isinstance(m, OutgoingMessage) else OutgoingMessage(m) for m in op.messages]
            keys = tuple(
                m.idempotency_key if m.idempotency_key is not None else derived_key(transaction_id, stage_seq, index, i)
                for i, m in enumerate(messages)
            )
            payload: dict[str, object] = {
                "op": "enqueue",
                "queue": op.queue,
                "messages": [message_json(m, k) for m, k in zip(messages, keys, strict=True)],
            }
            encoded.append(EncodedOp("enqueue", payload, keys=keys))
        elif isinstance(op, AckOp | NackOp | ExtendOp):
            receipts = tuple(receipt_list(op.receipts))
            kind: SettleKind = "ack" if isinstance(op, AckOp) else "nack" if isinstance(op, NackOp) else "extend"
            payload = {"op": kind, "queue": op.queue, "receipts": list(receipts)}
            if isinstance(op, NackOp) and op.delay_s is not None:
                payload["delay_s"] = op.delay_s
            if isinstance(op, ExtendOp):
                payload["visibility_timeout_s"] = op.visibility_timeout_s
            encoded.append(EncodedOp(kind, payload, receipts=receipts))
        else:
            raise TypeError(f"operations[{index}] is not an EnqueueOp, AckOp, NackOp or ExtendOp: {op!r}")
    return tuple(encoded)


def all_keys(ops: Sequence[EncodedOp]) -> tuple[str, ...]:
    return tuple(key for op in ops for key in op.keys)


def _op_result(result: wire.TxnOpResult, sent: EncodedOp | None) -> TransactionOpResult:
    if isinstance(result, wire.TxnEnqueued):
        keys: Sequence[str | None] = sent.keys if sent is not None else [None] * len(result.messages)
        return EnqueueOpResult(
            op="enqueue",
            messages=tuple(
                TransactionMessage(message_id=m.message_id, duplicate=m.duplicate, idempotency_key=k, seq=m.seq)
                for m, k in zip(result.messages, keys, strict=True)
            ),
        )
    outcomes: list[SettleOutcome] = []
    answered: list[str] = []
    for item in result.outcomes:
        if isinstance(item, wire.TxnSettleItem):
            outcomes.append(item.outcome)
            answered.append(item.receipt)
        else:
            outcomes.append(item)
    receipts = sent.receipts if sent is not None else tuple(answered) if len(answered) == len(outcomes) else ()
    return SettleOpResult(op=_settle_kind(result), outcomes=tuple(outcomes), receipts=receipts)


def _matches(result: wire.TxnOpResult, sent: EncodedOp) -> bool:
    if isinstance(result, wire.TxnEnqueued):
        return sent.kind == "enqueue" and len(result.messages) == len(sent.keys)
    return sent.kind == _settle_kind(result) and len(result.outcomes) == len(sent.receipts)


def op_results(
    results: Sequence[wire.TxnOpResult],
    sent: Sequence[EncodedOp] | None,
    *,
    strict: bool,
    status: int,
    node_url: str | None,
) -> tuple[TransactionOpResult, ...]:
    """The typed per-op results, with the keys and receipts this client sent when it knows them. ``strict``: the
    results must match ``sent`` op for op (a one-shot transaction), else it is a ``ProtocolError``; otherwise a
    mismatch (a handle that does not know every staged op) just leaves keys and receipts out."""
    if sent is not None and (
        len(results) != len(sent) or not all(_matches(r, s) for r, s in zip(results, sent, strict=True))
    ):
        if strict:
            raise ProtocolError(
                f"{node_url or 'server'} answered results that do not match the {len(sent)} ops sent",
                status=status,
                node_url=node_url,
            )
        sent = None
    if sent is None:
        return tuple(_op_result(r, None) for r in results)
    return tuple(_op_result(r, s) for r, s in zip(results, sent, strict=True))


def info_from(outcome: wire.TxnOutcome, transaction_id: str) -> TransactionInfo:
    return TransactionInfo(
        transaction_id=outcome.transaction_id or transaction_id,
        status=outcome.status,
        decided_index=outcome.decided_index,
        reason=outcome.reason,
        failures=outcome.failures,
        results=op_results(outcome.results, None, strict=False, status=200, node_url=None),
        expires_at=outcome.expires_at,
        expires_at_ms=outcome.expires_at_ms,
        staged_ops=outcome.staged_ops,
        duplicate=outcome.duplicate,
        commit_index=outcome.commit_index,
    )


def committed_result(
    outcome: wire.TxnOutcome,
    transaction_id: str,
    sent: Sequence[EncodedOp] | None,
    *,
    strict: bool,
    status: int,
    node_url: str,
) -> TransactionResult:
    if outcome.decided_index is None:
        raise ProtocolError(
            f"{node_url} answered a committed transaction without decided_index", status=status, node_url=node_url
        )
    return TransactionResult(
        transaction_id=transaction_id,
        decided_index=outcome.decided_index,
        duplicate=outcome.duplicate,
        results=op_results(outcome.results, sent, strict=strict, status=status, node_url=node_url),
        commit_index=outcome.commit_index,
    )


class AsyncTransaction:
    """An interactive transaction: ``stage`` ops in one or more calls, then ``commit`` (all of them apply,
    atomically) or ``abort``. Made by ``AsyncClient.begin_transaction`` (or ``resume_transaction``).

    As an async context manager (``async with txn:``, or ``async with client.begin_transaction(...) as txn:``) it
    commits when the block succeeds and aborts when the block raises, then re-raises; a transaction the block
    committed or aborted itself is left as it is. A commit that fails raises from the ``async with`` (e.g.
    ``TransactionAborted``); a failed abort is logged and the block's exception propagates (the transaction
    aborts by itself at its timeout anyway). ``result`` is the commit's outcome.

    The handle numbers its stage calls (``stage_seq``, from 1) and sends a stage again with the same number, so a
    retried stage is a no-op on the server. The number advances only when a stage call succeeds: after a stage
    raised (``OutcomeUnknownError`` included), calling ``stage`` again with the same ops reuses its number, and
    is a no-op if the lost attempt had staged them. Calls on one handle run one at a time.
    """

    def __init__(
        self,
        client: AsyncClient,
        transaction_id: str,
        *,
        next_stage_seq: int = 1,
        info: TransactionInfo | None = None,
        knows_staged_ops: bool = False,
    ) -> None:
        if next_stage_seq < 1:
            raise ValueError("next_stage_seq must be at least 1")
        self._client = client
        self._transaction_id = transaction_id
        self._next_seq = next_stage_seq
        #: What this handle staged, to give a commit's results their keys and receipts (``None``: not all known).
        self._staged: list[EncodedOp] | None = [] if knows_staged_ops else None
        self._lock = asyncio.Lock()
        self._info = info
        self._result: TransactionResult | None = None

    @property
    def transaction_id(self) -> str:
        return self._transaction_id

    @property
    def result(self) -> TransactionResult | None:
        """The outcome of the commit through this handle, once it committed."""
        return self._result

    @property
    def decided(self) -> bool:
        """This handle committed or aborted the transaction."""
        return self._result is not None or (self._info is not None and self._info.status is TransactionState.ABORTED)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc is None:
            if not self.decided:
                await self.commit()
            return
        if not self.decided:
            try:
                await self.abort()
            except RaftQueueError as abort_error:
                log.warning(
                    "aborting transaction %r after its block raised failed: %s", self._transaction_id, abort_error
                )

    @property
    def next_stage_seq(self) -> int:
        """The ``stage_seq`` the next ``stage`` call sends."""
        return self._next_seq

    @property
    def info(self) -> TransactionInfo | None:
        """The last answer of a begin, stage or abort through this handle."""
        return self._info

    def __repr__(self) -> str:
        return f"AsyncTransaction({self._transaction_id!r}, next_stage_seq={self._next_seq})"

    async def stage(self, operations: Sequence[TransactionOp]) -> TransactionInfo:
        """Adds ``operations`` to the transaction (nothing applies before ``commit``). Returns the pending
        transaction (``staged_ops`` counts every op staged so far)."""
        async with self._lock:
            seq = self._next_seq
            encoded = encode_ops(self._transaction_id, seq, operations)
            info = await self._client._stage_transaction(self._transaction_id, seq, encoded)
            self._next_seq = seq + 1
            if self._staged is not None:
                self._staged.extend(encoded)
            self._info = info
            return info

    async def commit(self) -> TransactionResult:
        """Applies every staged op, atomically. Raises ``TransactionAborted`` (``reason`` ``"timeout"`` or
        ``"preconditions"`` with ``failures``) when it cannot; then nothing applied."""
        async with self._lock:
            staged = None if self._staged is None else tuple(self._staged)
            self._result = await self._client._commit_transaction(self._transaction_id, staged)
            return self._result

    async def abort(self) -> TransactionInfo:
        """Drops the transaction; nothing staged applies."""
        async with self._lock:
            info = await self._client._abort_transaction(self._transaction_id)
            self._info = info
            return info


class TransactionBegin:
    """What ``AsyncClient.begin_transaction`` returns: await it for the handle, or enter it (``async with``) to
    begin, run the block, and commit or abort (see ``AsyncTransaction``)."""

    def __init__(self, begin: Coroutine[Any, Any, AsyncTransaction]) -> None:
        self._begin = begin
        self._handle: AsyncTransaction | None = None

    def __await__(self) -> Generator[Any, None, AsyncTransaction]:
        return self._begin.__await__()

    def close(self) -> None:
        """Discards a begin that was never awaited (no request is sent)."""
        self._begin.close()

    async def __aenter__(self) -> AsyncTransaction:
        self._handle = await self._begin
        return self._handle

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        assert self._handle is not None
        await self._handle.__aexit__(exc_type, exc, tb)
