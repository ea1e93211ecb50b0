"""Typed values the client takes and returns: one class per shape in docs/http-api.md.

Answers are frozen ``msgspec.Struct``s decoded straight from the response body (fields the server adds later
are ignored; a missing or mistyped field is a ``ProtocolError``). Durations are seconds, as in the API.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import KW_ONLY, dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Literal

import msgspec

Consistency = Literal["linearizable", "local"]

#: A message body: text (sent as ``"body"``, stored as its UTF-8 bytes) or bytes (sent as ``"body_base64"``, stored
#: as they are).
Body = str | bytes


@dataclass(frozen=True, slots=True)
class OutgoingMessage:
    """One message of ``enqueue_batch``. Without ``idempotency_key`` the client generates one (a uuid4), so
    that a retry of the batch after an unknown outcome cannot enqueue it twice. ``body`` may be text or bytes."""

    body: Body
    _: KW_ONLY
    attributes: Mapping[str, str] | None = None
    delay_s: float | None = None
    idempotency_key: str | None = None


class QueueConfig(msgspec.Struct, frozen=True):
    """A queue's settings. ``max_deliveries == 0`` means unlimited; ``max_length == 0`` means unbounded."""

    visibility_timeout_s: float
    max_deliveries: int
    max_length: int
    dedup_window_s: float
    max_message_bytes: int
    dead_letter_queue: str | None = None


class QueueCounts(msgspec.Struct, frozen=True):
    ready: int
    leased: int
    delayed: int
    dead_lettered: int
    enqueued_total: int
    acked_total: int


class QueueInfo(msgspec.Struct, frozen=True):
    name: str
    config: QueueConfig
    counts: QueueCounts
    created_at: datetime
    created_at_ms: int


class CreateQueueResult(msgspec.Struct, frozen=True):
    """``created`` is False when an identical queue already existed. After a retry whose first attempt had an
    unknown outcome, False may also mean "our first attempt created it"."""

    queue: QueueInfo
    created: bool
    commit_index: int


class DeleteQueueResult(msgspec.Struct, frozen=True):
    """``commit_index`` is ``None`` when the delete was confirmed by a ``404`` on a retry (an earlier attempt
    whose outcome was unknown deleted the queue, so its commit index was never seen)."""

    commit_index: int | None


class EnqueueResult(msgspec.Struct, frozen=True):
    message_id: str
    seq: int
    #: True: the key was already seen within the dedup window (possibly by this call's own earlier attempt);
    #: ``message_id`` and ``seq`` are the original message's and nothing new was enqueued.
    duplicate: bool
    commit_index: int
    #: The key the message was sent with (the caller's, or the one the client generated).
    idempotency_key: str


class EnqueuedMessage(msgspec.Struct, frozen=True):
    message_id: str
    seq: int
    duplicate: bool
    idempotency_key: str


class BatchEnqueueResult(msgspec.Struct, frozen=True):
    #: One entry per message sent, in the same order.
    messages: tuple[EnqueuedMessage, ...]
    commit_index: int


@dataclass(frozen=True, slots=True, kw_only=True)
class ReceivedMessage:
    """One delivery, as ``receive`` and ``consume`` hand it out (they hand out its subclasses ``AsyncMessage`` and
    ``Message``, which can settle themselves)."""

    message_id: str
    seq: int
    #: The body as text: its bytes decoded as UTF-8, invalid sequences replaced (U+FFFD).
    body: str
    #: The body's exact bytes (for one built by hand without them: ``body``'s UTF-8).
    data: bytes = field(default=b"", repr=False)
    #: The queue it was received from (empty for one built by hand without it).
    queue: str = ""
    attributes: dict[str, str]
    #: Names this delivery; the only way to ack, nack or extend it.
    receipt: str
    delivery_count: int
    enqueued_at: datetime
    enqueued_at_ms: int
    lease_expires_at: datetime
    lease_expires_at_ms: int

    def __post_init__(self) -> None:
        if not self.data and self.body:
            object.__setattr__(self, "data", self.body.encode())


class SettleOutcome(StrEnum):
    ACKED = "acked"
    NACKED = "nacked"
    EXTENDED = "extended"
    #: The nack used the message's last allowed delivery; it moved to the dead-letter queue.
    DEAD_LETTERED = "dead_lettered"
    #: The delivery expired, was superseded, or the message is gone: nothing changed.
    STALE = "stale"
    #: An earlier ack with this receipt took effect (e.g. this call's own first attempt, whose answer was lost);
    #: the message is gone. The server remembers acked receipts for a while; after that a repeat is ``stale``.
    ALREADY_ACKED = "already_acked"
    #: The receipt is malformed or belongs to another queue: nothing changed.
    INVALID = "invalid"


class SettleResult(msgspec.Struct, frozen=True):
    receipt: str
    outcome: SettleOutcome


# --- transactions ---------------------------------------------------------------------------------------------

#: What ``ack``/``nack``/``extend`` and the settling transaction ops take: receipts, or the received messages.
Receipts = str | ReceivedMessage | Sequence[str | ReceivedMessage]


def receipt_list(receipts: Receipts) -> list[str]:
    """The receipt strings of ``receipts``, in order."""
    if isinstance(receipts, str | ReceivedMessage):
        receipts = [receipts]
    return [r.receipt if isinstance(r, ReceivedMessage) else r for r in receipts]


@dataclass(frozen=True, slots=True)
class EnqueueOp:
    """Enqueue ``messages`` (``OutgoingMessage``s, or plain bodies, text or bytes) to ``queue`` as part of a
    transaction.

    A message without an ``idempotency_key`` gets one derived from the transaction ID and its position, so the
    same transaction sent again (a retry, or the application resending after ``OutcomeUnknownError``) is the
    byte-identical request."""

    queue: str
    messages: Sequence[OutgoingMessage | Body]

    def __post_init__(self) -> None:
        items = [self.messages] if isinstance(self.messages, str | bytes | OutgoingMessage) else self.messages
        messages = tuple(m if isinstance(m, OutgoingMessage) else OutgoingMessage(m) for m in items)
        object.__setattr__(self, "messages", messages)


@dataclass(frozen=True, slots=True)
class AckOp:
    """Ack deliveries of ``queue`` as part of a transaction."""

    queue: str
    receipts: Receipts

    def __post_init__(self) -> None:
        object.__setattr__(self, "receipts", tuple(receipt_list(self.receipts)))


@dataclass(frozen=True, slots=True)
class NackOp:
    """Nack deliveries of ``queue`` (ready again after ``delay_s``, the server's default 0 when ``None``)."""

    queue: str
    receipts: Receipts
    _: KW_ONLY
    delay_s: float | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "receipts", tuple(receipt_list(self.receipts)))


@dataclass(frozen=True, slots=True)
class ExtendOp:
    """Extend the leases of deliveries of ``queue`` to end ``visibility_timeout_s`` after the commit."""

    queue: str
    receipts: Receipts
    _: KW_ONLY
    visibility_timeout_s: float

    def __post_init__(self) -> None:
        object.__setattr__(self, "receipts", tuple(receipt_list(self.receipts)))


#: One operation of a transaction.
TransactionOp = EnqueueOp | AckOp | NackOp | ExtendOp


class TransactionState(StrEnum):
    PENDING = "pending"
    COMMITTED = "committed"
    ABORTED = "aborted"


class TransactionFailure(msgspec.Struct, frozen=True):
    """Why one op kept a transaction from committing."""

    #: The op's index in the transaction (0-based; for an interactive one, across all its stage calls).
    op: int
    #: A problem code (``queue_not_found``, ``queue_full``, ...) or a settle outcome (``stale``, ``invalid``).
    code: str
    detail: str = ""
    field: str | None = None


class TransactionMessage(msgspec.Struct, frozen=True):
    """One message an enqueue op of a committed transaction put in its queue."""

    message_id: str
    #: True: the key was already seen within the queue's dedup window; nothing new was enqueued.
    duplicate: bool
    #: The key it was sent with (``None`` when this client did not send the op, e.g. a resumed handle's).
    idempotency_key: str | None = None
    seq: int | None = None


class EnqueueOpResult(msgspec.Struct, frozen=True):
    op: Literal["enqueue"]
    #: One entry per message of the op, in order.
    messages: tuple[TransactionMessage, ...]


class SettleOpResult(msgspec.Struct, frozen=True):
    op: Literal["ack", "nack", "extend"]
    #: One outcome per receipt of the op, in order.
    outcomes: tuple[SettleOutcome, ...]
    #: The op's receipts, when this client sent the op (else empty).
    receipts: tuple[str, ...] = ()

    @property
    def results(self) -> tuple[SettleResult, ...]:
        """Receipt and outcome pairs (empty when the receipts are not known)."""
        if len(self.receipts) != len(self.outcomes):
            return ()
        return tuple(SettleResult(r, o) for r, o in zip(self.receipts, self.outcomes, strict=True))


#: What one op of a committed transaction did.
TransactionOpResult = EnqueueOpResult | SettleOpResult


class TransactionResult(msgspec.Struct, frozen=True):
    """A committed transaction: every op applied, atomically."""

    transaction_id: str
    #: The Raft index of the entry that committed it.
    decided_index: int
    #: True: the answer repeats a recorded outcome (this call's own earlier attempt, or an earlier call with
    #: the same transaction ID, committed it); nothing was applied now.
    duplicate: bool
    #: One entry per op, in order.
    results: tuple[TransactionOpResult, ...]
    #: The Raft index of the entry that carried this request: ``decided_index`` for the call that committed it,
    #: newer on a duplicate (``None`` only if the server did not send it).
    commit_index: int | None = None


class TransactionInfo(msgspec.Struct, frozen=True):
    """A transaction's record as the server knows it (``begin``, ``stage``, ``abort``, ``get_transaction``)."""

    transaction_id: str
    status: TransactionState
    decided_index: int | None = None
    #: Why it aborted: ``"preconditions"`` (see ``failures``), ``"timeout"``, or ``"aborted"`` (by a client).
    reason: str | None = None
    failures: tuple[TransactionFailure, ...] = ()
    #: Per op, when committed.
    results: tuple[TransactionOpResult, ...] = ()
    #: Pending: when it aborts by itself unless committed. Decided: when its record is forgotten.
    expires_at: datetime | None = None
    expires_at_ms: int | None = None
    #: Ops staged so far (interactive transactions).
    staged_ops: int = 0
    #: True: the answer repeats an earlier one (a retried begin, stage or abort); nothing was applied now.
    duplicate: bool = False
    #: The Raft index of the entry that carried the begin, stage or abort (``None`` from ``get_transaction``,
    #: which is a read).
    commit_index: int | None = None


class Member(msgspec.Struct, frozen=True):
    node_id: str
    raft_address: str
    http_url: str
    connected: bool


class ClusterStatus(msgspec.Struct, frozen=True):
    """One node's view of the cluster (``GET /v1/cluster``)."""

    node_id: str
    role: str
    leader_id: str | None
    leader_url: str | None
    term: int
    commit_index: int
    applied_index: int
    has_quorum: bool
    ready: bool
    members: tuple[Member, ...]


class Readiness(msgspec.Struct, frozen=True):
    """One node's answer to ``GET /readyz`` (``readiness()``): is it ready to serve current data (a leader known,
    and everything the leader committed applied here)?

    Ready: ``node_id``, ``leader_id``, ``applied_index`` and ``commit_index`` are what the node said. Not ready
    (``503 not_ready``): they are ``None`` and ``detail`` says why (no leader known, or still catching up)."""

    ready: bool
    #: The node that answered (the one named, or the preferred one).
    node_url: str
    node_id: str | None = None
    leader_id: str | None = None
    applied_index: int | None = None
    commit_index: int | None = None
    detail: str | None = None


class StateDigest(msgspec.Struct, frozen=True):
    """One node's fingerprint of its whole applied state (``GET /v1/cluster/digest``, ``state_digest()``):
    ``digest`` is a SHA-256 (hex) over its ``keys`` keys and values. Replicas at the same ``applied_index`` must
    report the same digest; different indexes say nothing."""

    node_id: str
    applied_index: int
    digest: str
    keys: int
