"""Results: what applying one operation returns. Domain errors are values (``Rejected``), never exceptions:
pysyncobj retries a replicated call that raises forever, so only corruption may raise out of ``apply``.
"""

from __future__ import annotations

from enum import StrEnum

import msgspec

from state_machine.config import QueueConfig


class ErrorCode(StrEnum):
    QUEUE_NOT_FOUND = "queue_not_found"
    QUEUE_EXISTS = "queue_exists"  # same name, different config
    QUEUE_IN_USE = "queue_in_use"  # deleting a queue that another queue dead-letters into
    DEAD_LETTER_QUEUE_NOT_FOUND = "dead_letter_queue_not_found"
    QUEUE_FULL = "queue_full"
    MESSAGE_TOO_LARGE = "message_too_large"
    IDEMPOTENCY_KEY_CONFLICT = "idempotency_key_conflict"
    INVALID_ARGUMENT = "invalid_argument"
    INVALID_ENTRY = "invalid_entry"  # the log entry did not decode; nothing in it was applied
    TRANSACTION_CONFLICT = "transaction_conflict"  # same transaction ID, different request
    TRANSACTION_NOT_FOUND = "transaction_not_found"
    TRANSACTION_NOT_PENDING = "transaction_not_pending"  # stage/commit on a committed or aborted transaction
    TRANSACTION_EXISTS = "transaction_exists"  # begin with an ID already used


class Rejected(msgspec.Struct, frozen=True):
    code: ErrorCode
    detail: str
    #: The request field at fault, as the client spells it (e.g. "messages[3].body"), when there is one.
    field: str | None = None


class QueueCreated(msgspec.Struct, frozen=True):
    created: bool  # False: a queue with the same config already existed


class QueueDeleted(msgspec.Struct, frozen=True):
    pass


class EnqueuedMessage(msgspec.Struct, frozen=True):
    message_id: str
    seq: int
    duplicate: bool = False


class Enqueued(msgspec.Struct, frozen=True):
    messages: list[EnqueuedMessage]


class Delivery(msgspec.Struct, frozen=True):
    message_id: str
    seq: int
    body: bytes
    attributes: dict[str, str]
    receipt: str
    delivery_count: int
    enqueued_at_ms: int
    lease_expires_at_ms: int
    #: The queue this message was dead-lettered from, when it was.
    dead_lettered_from: str | None = None


class Received(msgspec.Struct, frozen=True):
    messages: list[Delivery]
    #: Earliest time at which a delayed or leased message of this queue becomes ready (for long polls).
    next_visible_at_ms: int | None = None


class SettleOutcome(StrEnum):
    ACKED = "acked"
    NACKED = "nacked"
    EXTENDED = "extended"
    DEAD_LETTERED = "dead_lettered"  # a nack that used the last allowed delivery
    STALE = "stale"  # the receipt's delivery expired, was superseded, or the message is gone
    ALREADY_ACKED = "already_acked"  # an ack with this receipt took effect earlier (remembered for a while)
    INVALID = "invalid"  # the receipt is malformed or belongs to another queue


class Settled(msgspec.Struct, frozen=True):
    outcomes: list[SettleOutcome]


class BarrierPassed(msgspec.Struct, frozen=True):
    pass


class TxnStatus(StrEnum):
    PENDING = "pending"
    COMMITTED = "committed"
    ABORTED = "aborted"


class TxnFailure(msgspec.Struct, frozen=True):
    """Why one op of a transaction could not apply: an ErrorCode value, or a settle outcome (stale, invalid)."""

    op: int
    code: str
    detail: str
    field: str | None = None


class TxnOutcome(msgspec.Struct, frozen=True):
    transaction_id: str
    status: TxnStatus
    #: The Raft index of the entry that committed or aborted it (None while pending).
    decided_index: int | None = None
    #: Per op, when committed: Enqueued or Settled.
    results: list[Result] = []
    #: When aborted because ops could not apply: each failing op and why.
    failures: list[TxnFailure] = []
    #: "timeout", "aborted" (by the client) or "preconditions" when aborted.
    reason: str | None = None
    #: Pending: when it aborts by itself. Decided: when its record is forgotten.
    expires_at_ms: int = 0
    #: Ops staged so far (interactive transactions).
    staged_ops: int = 0
    #: True when this answer repeats a recorded outcome (a retry): nothing was applied now.
    duplicate: bool = False


Result = Rejected | QueueCreated | QueueDeleted | Enqueued | Received | Settled | BarrierPassed | TxnOutcome


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
    created_at_ms: int


class StateDigest(msgspec.Struct, frozen=True):
    """A fingerprint of a replica's whole state: equal applied indexes must mean equal digests."""

    applied_index: int
    digest: str  # SHA-256 hex over every key and value, in key order
    keys: int
