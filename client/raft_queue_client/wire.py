"""The JSON of docs/http-api.md: response envelopes, the problem document, and decoding that turns anything
malformed into ``ProtocolError``."""

from __future__ import annotations

from datetime import datetime
from typing import TypeVar

import msgspec

from raft_queue_client.errors import ApiError, ProtocolError, error_from_problem
from raft_queue_client.models import (
    QueueInfo,
    SettleOutcome,
    SettleResult,
    TransactionFailure,
    TransactionState,
)

T = TypeVar("T")

PROBLEM_CONTENT_TYPE = "application/problem+json"

_encoder = msgspec.json.Encoder()


def encode(value: object) -> bytes:
    return _encoder.encode(value)


class Problem(msgspec.Struct, frozen=True):
    """An RFC 9457 problem document as the API fills it."""

    code: str
    status: int | None = None
    type: str | None = None
    title: str | None = None
    detail: str | None = None
    retry: str | None = None
    field: str | None = None
    outcome: str | None = None
    #: ``transaction_aborted``: which transaction, why, which ops could not apply, the entry that decided it,
    #: and whether the answer repeats a recorded abort.
    reason: str | None = None
    failures: tuple[TransactionFailure, ...] = ()
    transaction_id: str | None = None
    decided_index: int | None = None
    duplicate: bool = False

    @property
    def outcome_unknown(self) -> bool:
        """The server says a write may or may not have committed."""
        return self.retry == "same_idempotency_key" or self.outcome == "unknown" or self.code == "outcome_unknown"

    def to_error(self, status: int, *, retry_after_s: float | None, node_url: str | None) -> ApiError:
        return error_from_problem(
            status,
            self.code,
            self.detail or self.title or self.code,
            field=self.field,
            retry=self.retry,
            title=self.title,
            outcome=self.outcome,
            retry_after_s=retry_after_s,
            node_url=node_url,
            reason=self.reason,
            failures=self.failures,
            transaction_id=self.transaction_id,
            decided_index=self.decided_index,
            duplicate=self.duplicate,
        )


def parse_problem(content_type: str, body: bytes) -> Problem | None:
    """The problem in an error answer, or ``None`` when the body is not one (a proxy's HTML page, nothing)."""
    if content_type not in (PROBLEM_CONTENT_TYPE, "application/json") or not body:
        return None
    try:
        return msgspec.json.decode(body, type=Problem)
    except msgspec.MsgspecError:
        return None


def decode(body: bytes, into: type[T], *, status: int, node_url: str | None) -> T:
    """Decodes a success body; anything that is not the documented shape is a ``ProtocolError``."""
    try:
        return msgspec.json.decode(body, type=into)
    except msgspec.MsgspecError as exc:
        raise ProtocolError(
            f"{node_url or 'server'} answered {status} with a body that is not the API's: {exc}",
            status=status,
            node_url=node_url,
        ) from exc


# --- Response envelopes (success bodies that are not returned as they are) ---------------------------------


class Health(msgspec.Struct, frozen=True):
    """``GET /healthz``: ``{"status": "ok"}`` while the process serves HTTP."""

    status: str


class Ready(msgspec.Struct, frozen=True):
    """``GET /readyz``'s ``200`` (a ``Readiness`` with ``ready=True``)."""

    status: str
    node_id: str
    leader_id: str | None
    applied_index: int
    commit_index: int


class QueueList(msgspec.Struct, frozen=True):
    queues: tuple[QueueInfo, ...]


class Deleted(msgspec.Struct, frozen=True):
    deleted: bool
    commit_index: int


class Enqueued(msgspec.Struct, frozen=True):
    message_id: str
    seq: int
    duplicate: bool
    commit_index: int


class BatchItem(msgspec.Struct, frozen=True):
    message_id: str
    seq: int
    duplicate: bool


class BatchEnqueued(msgspec.Struct, frozen=True):
    messages: tuple[BatchItem, ...]
    commit_index: int


class Delivery(msgspec.Struct, frozen=True):
    """One received message as sent: ``body_base64`` (asked for with ``"body_encoding": "base64"``; msgspec decodes
    the base64) or ``body`` (a server that answers text)."""

    message_id: str
    seq: int
    attributes: dict[str, str]
    receipt: str
    delivery_count: int
    enqueued_at: datetime
    enqueued_at_ms: int
    lease_expires_at: datetime
    lease_expires_at_ms: int
    body: str | None = None
    body_base64: bytes | None = None


class Received(msgspec.Struct, frozen=True):
    messages: tuple[Delivery, ...]
    #: Tolerated as absent: a long poll that found nothing may not have gone through the log.
    commit_index: int | None = None


class Settled(msgspec.Struct, frozen=True):
    results: tuple[SettleResult, ...]
    commit_index: int


# --- transactions --------------------------------------------------------------------------------------------


class TxnMessage(msgspec.Struct, frozen=True):
    message_id: str
    duplicate: bool
    seq: int | None = None


class TxnEnqueued(msgspec.Struct, frozen=True, tag_field="op", tag="enqueue"):
    messages: tuple[TxnMessage, ...]


class TxnSettleItem(msgspec.Struct, frozen=True):
    """An outcome sent as ``{"receipt", "outcome"}`` rather than a bare string (tolerated)."""

    receipt: str
    outcome: SettleOutcome


class TxnSettled(msgspec.Struct, frozen=True, tag_field="op"):
    outcomes: tuple[SettleOutcome | TxnSettleItem, ...]


class TxnAcked(TxnSettled, frozen=True, tag="ack"):
    pass


class TxnNacked(TxnSettled, frozen=True, tag="nack"):
    pass


class TxnExtended(TxnSettled, frozen=True, tag="extend"):
    pass


TxnOpResult = TxnEnqueued | TxnAcked | TxnNacked | TxnExtended


class TxnOutcome(msgspec.Struct, frozen=True):
    """Every transaction answer: committed (``transact``, ``commit``), pending (begin, stage), aborted, or a
    ``GET``. Only ``status`` is required; the client fills in the ID it asked about."""

    status: TransactionState
    transaction_id: str | None = None
    decided_index: int | None = None
    duplicate: bool = False
    results: tuple[TxnOpResult, ...] = ()
    reason: str | None = None
    failures: tuple[TransactionFailure, ...] = ()
    expires_at: datetime | None = None
    expires_at_ms: int | None = None
    staged_ops: int = 0
    #: Writes only (not a ``GET``): the index of the entry that carried this request.
    commit_index: int | None = None
