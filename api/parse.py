"""Typed requests: one parser per endpoint, from a decoded JSON object (and path/query/header values) to the
command the backend executes. Nothing here talks to the backend; every error is a 400 naming the field.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from api.problems import invalid_request
from api.validation import (
    as_flag,
    as_int,
    as_list,
    as_number,
    as_object,
    as_str,
    check_fields,
    duration_ms,
    join,
    require,
    seconds_to_ms,
)
from state_machine.commands import Ack, Enqueue, Extend, Nack, NewMessage, Receive, fingerprint
from state_machine.config import (
    MAX_ATTRIBUTE_LEN,
    MAX_ATTRIBUTES,
    MAX_BATCH,
    MAX_DELAY_MS,
    MAX_IDEMPOTENCY_KEY_LEN,
    MAX_RECEIVE,
    MAX_VISIBILITY_TIMEOUT_MS,
    ConfigError,
    QueueConfig,
    check_queue_name,
    validate_config,
)

MAX_ATTRIBUTE_KEY_LEN = 128
MAX_WAIT_S = 20
MAX_RECEIPTS = 1000
IDEMPOTENCY_HEADER = "Idempotency-Key"

_CONFIG_FIELDS = (
    "visibility_timeout_s",
    "max_deliveries",
    "dead_letter_queue",
    "max_length",
    "dedup_window_s",
    "max_message_bytes",
)
_MESSAGE_FIELDS = ("body", "attributes", "delay_s", "idempotency_key")


# --- path and query -----------------------------------------------------------------------------------------


def queue_name(name: str) -> str:
    try:
        check_queue_name(name, "queue")
    except ConfigError as exc:
        raise invalid_request(exc.field, exc.detail) from None
    return name


def local_consistency(query: Mapping[str, str]) -> bool:
    """True for ``?consistency=local``; absent or ``linearizable`` is a linearizable read; else an error."""
    value = query.get("consistency")
    if value is None or value == "linearizable":
        return False
    if value != "local":
        raise invalid_request("consistency", f"must be 'linearizable' (the default) or 'local', got {value!r}")
    return True


def wants_redirect(query: Mapping[str, str]) -> bool:
    value = query.get("redirect")
    return value is not None and as_flag(value, "redirect")


# --- queues -------------------------------------------------------------------------------------------------


def queue_config(name: str, obj: Mapping[str, object]) -> QueueConfig:
    """A ``PUT`` body -> ``QueueConfig``. Types are checked here; ranges by ``validate_config``."""
    check_fields(obj, _CONFIG_FIELDS)
    default = QueueConfig()

    def ms(field: str, fallback: int) -> int:
        return seconds_to_ms(obj[field], field) if field in obj else fallback

    def integer(field: str, fallback: int) -> int:
        return as_int(obj[field], field) if field in obj else fallback

    dlq = obj.get("dead_letter_queue")
    config = QueueConfig(
        visibility_timeout_ms=ms("visibility_timeout_s", default.visibility_timeout_ms),
        max_deliveries=integer("max_deliveries", default.max_deliveries),
        dead_letter_queue=None if dlq is None else as_str(dlq, "dead_letter_queue"),
        max_length=integer("max_length", default.max_length),
        dedup_window_ms=ms("dedup_window_s", default.dedup_window_ms),
        max_message_bytes=integer("max_message_bytes", default.max_message_bytes),
    )
    try:
        validate_config(name, config)
    except ConfigError as exc:
        raise invalid_request(exc.field, exc.detail) from None
    return config


# --- enqueue ------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MessageSpec:
    body: bytes
    attributes: dict[str, str]
    delay_ms: int
    idempotency_key: str | None

    def to_new_message(self, message_id: str) -> NewMessage:
        return NewMessage(
            message_id=message_id,
            body=self.body,
            attributes=self.attributes,
            delay_ms=self.delay_ms,
            idempotency_key=self.idempotency_key,
            fingerprint=fingerprint(self.body, self.attributes, self.delay_ms),
        )


@dataclass(frozen=True, slots=True)
class EnqueueRequest:
    messages: list[MessageSpec]
    #: The request used the ``{"messages": [...]}`` shape (answered in the batch shape, even for one message).
    batch: bool

    def to_command(self, queue: str, new_id: Callable[[], str]) -> Enqueue:
        return Enqueue(queue=queue, messages=[m.to_new_message(new_id()) for m in self.messages])


def _idempotency_key(value: object, field: str) -> str | None:
    if value is None:
        return None
    return as_str(value, field, min_len=1, max_len=MAX_IDEMPOTENCY_KEY_LEN)


def _attributes(value: object, field: str) -> dict[str, str]:
    attributes = as_object(value, field)
    if len(attributes) > MAX_ATTRIBUTES:
        raise invalid_request(field, f"at most {MAX_ATTRIBUTES} attributes, got {len(attributes)}")
    checked: dict[str, str] = {}
    for key, item in attributes.items():
        if not 1 <= len(key) <= MAX_ATTRIBUTE_KEY_LEN:
            raise invalid_request(
                field, f"attribute names must be 1 to {MAX_ATTRIBUTE_KEY_LEN} characters, got {len(key)}"
            )
        checked[key] = as_str(item, f"{field}.{key}", max_len=MAX_ATTRIBUTE_LEN)
    return checked


def _message(obj: Mapping[str, object], prefix: str) -> MessageSpec:
    check_fields(obj, _MESSAGE_FIELDS, prefix)
    body = as_str(require(obj, "body", prefix), join(prefix, "body"))
    attributes = _attributes(obj["attributes"], join(prefix, "attributes")) if "attributes" in obj else {}
    delay_ms = 0
    if "delay_s" in obj:
        delay_ms = duration_ms(obj["delay_s"], join(prefix, "delay_s"), max_ms=MAX_DELAY_MS, positive=False)
    key = _idempotency_key(obj.get("idempotency_key"), join(prefix, "idempotency_key"))
    return MessageSpec(body.encode("utf-8"), attributes, delay_ms, key)


def enqueue(obj: Mapping[str, object], header_key: str | None) -> EnqueueRequest:
    """One message or a ``{"messages": [...]}`` batch; ``header_key``: the ``Idempotency-Key`` header."""
    if header_key is not None:
        header_key = as_str(header_key, IDEMPOTENCY_HEADER, min_len=1, max_len=MAX_IDEMPOTENCY_KEY_LEN)
    if "messages" in obj:
        check_fields(obj, ("messages",))
        if header_key is not None:
            raise invalid_request(
                IDEMPOTENCY_HEADER,
                "applies to single-message requests only; give each message of a batch its own idempotency_key",
            )
        items = as_list(obj["messages"], "messages", min_len=1, max_len=MAX_BATCH)
        specs = [_message(as_object(item, f"messages[{i}]"), f"messages[{i}]") for i, item in enumerate(items)]
        return EnqueueRequest(specs, batch=True)
    spec = _message(obj, "")
    if header_key is not None:
        if spec.idempotency_key is None:
            spec = MessageSpec(spec.body, spec.attributes, spec.delay_ms, header_key)
        elif spec.idempotency_key != header_key:
            raise invalid_request("idempotency_key", f"differs from the {IDEMPOTENCY_HEADER} header")
    return EnqueueRequest([spec], batch=False)


# --- receive and settle -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ReceiveRequest:
    command: Receive
    wait_s: float


def receive(queue: str, obj: Mapping[str, object]) -> ReceiveRequest:
    check_fields(obj, ("max_messages", "visibility_timeout_s", "wait_s"))
    max_messages = 1
    if "max_messages" in obj:
        max_messages = as_int(obj["max_messages"], "max_messages", lo=1, hi=MAX_RECEIVE)
    visibility_ms: int | None = None
    if obj.get("visibility_timeout_s") is not None:
        visibility_ms = duration_ms(
            obj["visibility_timeout_s"],
            "visibility_timeout_s",
            max_ms=MAX_VISIBILITY_TIMEOUT_MS,
            positive=True,
        )
    wait_s = 0.0
    if "wait_s" in obj:
        wait_s = as_number(obj["wait_s"], "wait_s")
        if not 0 <= wait_s <= MAX_WAIT_S:
            raise invalid_request("wait_s", f"must be 0 to {MAX_WAIT_S} seconds")
    return ReceiveRequest(Receive(queue, max_messages, visibility_ms), float(wait_s))


#: Receipts are 43 characters today; the bound leaves room for a future format and keeps entries small.
MAX_RECEIPT_LEN = 256


def _receipts(obj: Mapping[str, object]) -> list[str]:
    items = as_list(require(obj, "receipts"), "receipts", min_len=1, max_len=MAX_RECEIPTS)
    return [as_str(item, f"receipts[{i}]", min_len=1, max_len=MAX_RECEIPT_LEN) for i, item in enumerate(items)]


def ack(queue: str, obj: Mapping[str, object]) -> Ack:
    check_fields(obj, ("receipts",))
    return Ack(queue, _receipts(obj))


def nack(queue: str, obj: Mapping[str, object]) -> Nack:
    check_fields(obj, ("receipts", "delay_s"))
    receipts = _receipts(obj)
    delay_ms = 0
    if "delay_s" in obj:
        delay_ms = duration_ms(obj["delay_s"], "delay_s", max_ms=MAX_DELAY_MS, positive=False)
    return Nack(queue, receipts, delay_ms)


def extend(queue: str, obj: Mapping[str, object]) -> Extend:
    check_fields(obj, ("receipts", "visibility_timeout_s"))
    receipts = _receipts(obj)
    visibility_ms = duration_ms(
        require(obj, "visibility_timeout_s"),
        "visibility_timeout_s",
        max_ms=MAX_VISIBILITY_TIMEOUT_MS,
        positive=True,
    )
    return Extend(queue, receipts, visibility_ms)
