"""Typed values the client takes and returns: one class per shape in docs/http-api.md.

Answers are frozen ``msgspec.Struct``s decoded straight from the response body (fields the server adds later
are ignored; a missing or mistyped field is a ``ProtocolError``). Durations are seconds, as in the API.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import KW_ONLY, dataclass
from datetime import datetime
from enum import StrEnum
from typing import Literal

import msgspec

Consistency = Literal["linearizable", "local"]


@dataclass(frozen=True, slots=True)
class OutgoingMessage:
    """One message of ``enqueue_batch``. Without ``idempotency_key`` the client generates one (a uuid4), so
    that a retry of the batch after an unknown outcome cannot enqueue it twice."""

    body: str
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


class ReceivedMessage(msgspec.Struct, frozen=True):
    message_id: str
    seq: int
    body: str
    attributes: dict[str, str]
    #: Names this delivery; the only way to ack, nack or extend it.
    receipt: str
    delivery_count: int
    enqueued_at: datetime
    enqueued_at_ms: int
    lease_expires_at: datetime
    lease_expires_at_ms: int


class SettleOutcome(StrEnum):
    ACKED = "acked"
    NACKED = "nacked"
    EXTENDED = "extended"
    #: The nack used the message's last allowed delivery; it moved to the dead-letter queue.
    DEAD_LETTERED = "dead_lettered"
    #: The delivery expired, was superseded, or the message is gone: nothing changed. A retried ack whose
    #: first attempt succeeded answers this (the message is gone).
    STALE = "stale"
    #: The receipt is malformed or belongs to another queue: nothing changed.
    INVALID = "invalid"


class SettleResult(msgspec.Struct, frozen=True):
    receipt: str
    outcome: SettleOutcome


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
