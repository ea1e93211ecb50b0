"""Queue configuration: the value a client sets with ``PUT /v1/queues/{queue}``.

All durations are whole milliseconds inside the state machine so that every replica computes the same
deadlines; the HTTP layer speaks seconds and converts at the edge.
"""

from __future__ import annotations

import re

import msgspec

QUEUE_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")  # always fullmatch: "$" accepts a final "\n"

DEFAULT_VISIBILITY_TIMEOUT_MS = 30_000
MAX_VISIBILITY_TIMEOUT_MS = 12 * 3600 * 1000  # SQS's cap: 12 h
DEFAULT_DEDUP_WINDOW_MS = 24 * 3600 * 1000
MAX_DEDUP_WINDOW_MS = 30 * 24 * 3600 * 1000
DEFAULT_MAX_MESSAGE_BYTES = 1024 * 1024
MAX_MESSAGE_BYTES_LIMIT = 8 * 1024 * 1024
MAX_DELAY_MS = 15 * 60 * 1000  # SQS's cap: 15 min
MAX_DELIVERIES_LIMIT = 1000
MAX_BATCH = 1000
MAX_RECEIVE = 1000
MAX_IDEMPOTENCY_KEY_LEN = 256
MAX_ATTRIBUTES = 32
MAX_ATTRIBUTE_LEN = 1024
#: A retried receive with the same attempt ID within this long returns the first attempt's deliveries.
RECEIVE_ATTEMPT_TTL_MS = 5 * 60 * 1000
MAX_RECEIVE_ATTEMPT_ID_LEN = 128
#: Transactions. Ops per transaction (one-shot, or all stage calls of an interactive one together), and items
#: (messages plus receipts over all of its ops): one commit does at most the work of one full batch.
MAX_TXN_OPS = 100
MAX_TXN_ITEMS = MAX_BATCH
#: Bytes of message bodies and attributes over all of a transaction's ops (one-shot or staged): an interactive
#: commit applies everything staged in one entry, so its work is bounded like one large request's.
MAX_TXN_BYTES = 16 * 1024 * 1024
MAX_TRANSACTION_ID_LEN = 128
MIN_TXN_TIMEOUT_MS = 1000
MAX_TXN_TIMEOUT_MS = 15 * 60 * 1000
MIN_TXN_RETENTION_MS = 1000
MAX_TXN_RETENTION_MS = 365 * 24 * 3600 * 1000


class QueueConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, array_like=True):
    """A queue's settings. ``max_deliveries == 0`` means unlimited; ``max_length == 0`` means unbounded."""

    visibility_timeout_ms: int = DEFAULT_VISIBILITY_TIMEOUT_MS
    max_deliveries: int = 0
    dead_letter_queue: str | None = None
    max_length: int = 0
    dedup_window_ms: int = DEFAULT_DEDUP_WINDOW_MS
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES


class ConfigError(ValueError):
    """A configuration value is out of range. ``field`` names it as the client spelled it."""

    def __init__(self, field: str, detail: str) -> None:
        super().__init__(f"{field}: {detail}")
        self.field = field
        self.detail = detail


def check_queue_name(name: str, field: str = "queue") -> None:
    if not QUEUE_NAME_RE.fullmatch(name):
        raise ConfigError(
            field, "must be 1-128 characters of letters, digits, '_', '.' or '-', starting with a letter or digit"
        )


def validate_config(name: str, config: QueueConfig) -> None:
    """Checks ranges that do not depend on other queues. Raises ConfigError."""
    check_queue_name(name)
    if not 0 < config.visibility_timeout_ms <= MAX_VISIBILITY_TIMEOUT_MS:
        raise ConfigError("visibility_timeout_s", "must be > 0 and at most 43200 (12 h)")
    if not 0 <= config.max_deliveries <= MAX_DELIVERIES_LIMIT:
        raise ConfigError("max_deliveries", f"must be 0 (unlimited) to {MAX_DELIVERIES_LIMIT}")
    if config.max_deliveries and config.dead_letter_queue is None:
        raise ConfigError("dead_letter_queue", "is required when max_deliveries is set")
    if config.dead_letter_queue is not None:
        check_queue_name(config.dead_letter_queue, "dead_letter_queue")
        if config.dead_letter_queue == name:
            raise ConfigError("dead_letter_queue", "must not be the queue itself")
        if not config.max_deliveries:
            raise ConfigError("max_deliveries", "must be set (1 or more) when dead_letter_queue is set")
    if config.max_length < 0:
        raise ConfigError("max_length", "must be 0 (unbounded) or more")
    if not 0 < config.dedup_window_ms <= MAX_DEDUP_WINDOW_MS:
        raise ConfigError("dedup_window_s", "must be > 0 and at most 2592000 (30 days)")
    if not 0 < config.max_message_bytes <= MAX_MESSAGE_BYTES_LIMIT:
        raise ConfigError("max_message_bytes", f"must be 1 to {MAX_MESSAGE_BYTES_LIMIT}")
