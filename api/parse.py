"""Typed requests: one parser per endpoint, from a decoded JSON object (and path/query/header values) to the
command the backend executes. Nothing here talks to the backend; every error is a 400 naming the field.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Literal, get_args

from api.problems import invalid_request
from api.validation import (
    INT64_MAX,
    as_base64,
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
from state_machine.commands import Ack, Enqueue, Extend, Nack, NewMessage, Receive, TxnOp, fingerprint
from state_machine.config import (
    MAX_ATTRIBUTE_LEN,
    MAX_ATTRIBUTES,
    MAX_BATCH,
    MAX_DELAY_MS,
    MAX_IDEMPOTENCY_KEY_LEN,
    MAX_RECEIVE,
    MAX_RECEIVE_ATTEMPT_ID_LEN,
    MAX_TRANSACTION_ID_LEN,
    MAX_TXN_ITEMS,
    MAX_TXN_OPS,
    MAX_TXN_TIMEOUT_MS,
    MAX_VISIBILITY_TIMEOUT_MS,
    MIN_TXN_TIMEOUT_MS,
    ConfigError,
    QueueConfig,
    check_queue_name,
    validate_config,
)

MAX_ATTRIBUTE_KEY_LEN = 128
MAX_WAIT_S = 20
MAX_RECEIPTS = 1000
IDEMPOTENCY_HEADER = "Idempotency-Key"

#: Client-chosen IDs (transaction IDs, receive attempt IDs): safe in a URL path segment as they are.
CLIENT_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]*")  # always fullmatch
DEFAULT_TXN_TIMEOUT_MS = 30_000

_CONFIG_FIELDS = (
    "visibility_timeout_s",
    "max_deliveries",
    "dead_letter_queue",
    "max_length",
    "dedup_window_s",
    "max_message_bytes",
)
_MESSAGE_FIELDS = ("body", "body_base64", "attributes", "delay_s", "idempotency_key")
#: How a receive renders bodies: ``text`` as ``body`` (UTF-8, damaged bytes replaced), ``base64`` as
#: ``body_base64`` (the exact bytes).
BodyEncoding = Literal["text", "base64"]
BODY_ENCODINGS: tuple[BodyEncoding, ...] = get_args(BodyEncoding)


# --- path and query -----------------------------------------------------------------------------------------


def queue_name(name: str, field: str = "queue") -> str:
    try:
        check_queue_name(name, field)
    except ConfigError as exc:
        raise invalid_request(exc.field, exc.detail) from None
    return name


def client_id(value: object, field: str, max_len: int = MAX_TRANSACTION_ID_LEN) -> str:
    """A transaction ID or receive attempt ID: 1-128 characters of letters, digits, ``_ . : -``, starting with
    a letter or digit (so it can be written in a URL path as it is)."""
    text = as_str(value, field, min_len=1, max_len=max_len)
    if not CLIENT_ID_RE.fullmatch(text):
        raise invalid_request(field, "must be letters, digits, '_', '.', ':' or '-', starting with a letter or digit")
    return text


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
            # Only a message with an idempotency key is ever compared with another (a retry under the key).
            fingerprint=b"" if self.idempotency_key is None else fingerprint(self.body, self.attributes, self.delay_ms),
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


def _body(obj: Mapping[str, object], prefix: str) -> bytes:
    """The bytes to store: exactly one of ``body`` (a string, stored as UTF-8) or ``body_base64`` (bytes)."""
    if ("body" in obj) == ("body_base64" in obj):
        given = "both were given" if "body" in obj else "neither was given"
        raise invalid_request(join(prefix, "body"), f"give exactly one of body or body_base64 ({given})")
    if "body_base64" in obj:
        return as_base64(obj["body_base64"], join(prefix, "body_base64"))
    return as_str(obj["body"], join(prefix, "body")).encode("utf-8")


def _message(obj: Mapping[str, object], prefix: str) -> MessageSpec:
    check_fields(obj, _MESSAGE_FIELDS, prefix)
    body = _body(obj, prefix)
    attributes = _attributes(obj["attributes"], join(prefix, "attributes")) if "attributes" in obj else {}
    delay_ms = 0
    if "delay_s" in obj:
        delay_ms = duration_ms(obj["delay_s"], join(prefix, "delay_s"), max_ms=MAX_DELAY_MS, positive=False)
    key = _idempotency_key(obj.get("idempotency_key"), join(prefix, "idempotency_key"))
    return MessageSpec(body, attributes, delay_ms, key)


def enqueue(obj: Mapping[str, object], header_key: str | None) -> EnqueueRequest:
    """One message or a ``{"messages": [...]}`` batch; ``header_key``: the ``Idempotency-Key`` header."""
    if header_key is not None:
        header_key = as_str(header_key, IDEMPOTENCY_HEADER, min_len=1, max_len=MAX_IDEMPOTENCY_KEY_LEN)
        if not header_key.isascii() or not header_key.isprintable():
            # aiohttp hands raw non-UTF-8 header bytes over as surrogates; such a key cannot be encoded into the
            # log entry, and one that failed there took the other operations of its group commit with it.
            raise invalid_request(IDEMPOTENCY_HEADER, "must be printable ASCII (send other keys in the JSON body)")
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
    body_encoding: BodyEncoding


def _body_encoding(value: object) -> BodyEncoding:
    text = as_str(value, "body_encoding")
    for encoding in BODY_ENCODINGS:
        if text == encoding:
            return encoding
    raise invalid_request("body_encoding", f"must be 'text' (the default) or 'base64', got {text!r}")


def receive(queue: str, obj: Mapping[str, object]) -> ReceiveRequest:
    check_fields(obj, ("max_messages", "visibility_timeout_s", "wait_s", "receive_attempt_id", "body_encoding"))
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
    attempt = obj.get("receive_attempt_id")
    attempt_id = None if attempt is None else client_id(attempt, "receive_attempt_id", MAX_RECEIVE_ATTEMPT_ID_LEN)
    encoding = _body_encoding(obj["body_encoding"]) if "body_encoding" in obj else "text"
    return ReceiveRequest(Receive(queue, max_messages, visibility_ms, attempt_id), float(wait_s), encoding)


#: Receipts are 43 characters today; the bound leaves room for a future format and keeps entries small.
MAX_RECEIPT_LEN = 256


def _receipts(obj: Mapping[str, object], prefix: str = "") -> list[str]:
    field = join(prefix, "receipts")
    items = as_list(require(obj, "receipts", prefix), field, min_len=1, max_len=MAX_RECEIPTS)
    return [as_str(item, f"{field}[{i}]", min_len=1, max_len=MAX_RECEIPT_LEN) for i, item in enumerate(items)]


def _ack(queue: str, obj: Mapping[str, object], prefix: str) -> Ack:
    return Ack(queue, _receipts(obj, prefix))


def _nack(queue: str, obj: Mapping[str, object], prefix: str) -> Nack:
    receipts = _receipts(obj, prefix)
    delay_ms = 0
    if "delay_s" in obj:
        delay_ms = duration_ms(obj["delay_s"], join(prefix, "delay_s"), max_ms=MAX_DELAY_MS, positive=False)
    return Nack(queue, receipts, delay_ms)


def _extend(queue: str, obj: Mapping[str, object], prefix: str) -> Extend:
    receipts = _receipts(obj, prefix)
    visibility_ms = duration_ms(
        require(obj, "visibility_timeout_s", prefix),
        join(prefix, "visibility_timeout_s"),
        max_ms=MAX_VISIBILITY_TIMEOUT_MS,
        positive=True,
    )
    return Extend(queue, receipts, visibility_ms)


def ack(queue: str, obj: Mapping[str, object]) -> Ack:
    check_fields(obj, ("receipts",))
    return _ack(queue, obj, "")


def nack(queue: str, obj: Mapping[str, object]) -> Nack:
    check_fields(obj, ("receipts", "delay_s"))
    return _nack(queue, obj, "")


def extend(queue: str, obj: Mapping[str, object]) -> Extend:
    check_fields(obj, ("receipts", "visibility_timeout_s"))
    return _extend(queue, obj, "")


# --- transactions -------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EnqueueOp:
    """A transaction's enqueue before message IDs are assigned."""

    queue: str
    messages: list[MessageSpec]


OpSpec = EnqueueOp | Ack | Nack | Extend

_SETTLE_PARSERS: Mapping[str, Callable[[str, Mapping[str, object], str], Ack | Nack | Extend]] = {
    "ack": _ack,
    "nack": _nack,
    "extend": _extend,
}
#: Fields of each op object besides "op" and "queue".
_OP_FIELDS: Mapping[str, tuple[str, ...]] = {
    "enqueue": ("messages",),
    "ack": ("receipts",),
    "nack": ("receipts", "delay_s"),
    "extend": ("receipts", "visibility_timeout_s"),
}


def _txn_op(obj: Mapping[str, object], prefix: str) -> OpSpec:
    kind = as_str(require(obj, "op", prefix), join(prefix, "op"))
    if kind not in _OP_FIELDS:
        raise invalid_request(join(prefix, "op"), f"must be one of enqueue, ack, nack, extend; got {kind!r}")
    check_fields(obj, ("op", "queue", *_OP_FIELDS[kind]), prefix)
    queue_field = join(prefix, "queue")
    queue = queue_name(as_str(require(obj, "queue", prefix), queue_field), queue_field)
    if kind != "enqueue":
        return _SETTLE_PARSERS[kind](queue, obj, prefix)
    field = join(prefix, "messages")
    items = as_list(require(obj, "messages", prefix), field, min_len=1, max_len=MAX_BATCH)
    return EnqueueOp(
        queue, [_message(as_object(item, f"{field}[{i}]"), f"{field}[{i}]") for i, item in enumerate(items)]
    )


def _txn_ops(obj: Mapping[str, object]) -> list[OpSpec]:
    items = as_list(require(obj, "operations"), "operations", min_len=1, max_len=MAX_TXN_OPS)
    specs = [_txn_op(as_object(item, f"operations[{i}]"), f"operations[{i}]") for i, item in enumerate(items)]
    total = sum(len(spec.messages) if isinstance(spec, EnqueueOp) else len(spec.receipts) for spec in specs)
    if total > MAX_TXN_ITEMS:
        raise invalid_request("operations", f"at most {MAX_TXN_ITEMS} messages and receipts in all, got {total}")
    seen: dict[str, str] = {}
    for i, spec in enumerate(specs):
        if isinstance(spec, EnqueueOp):
            continue
        for j, receipt in enumerate(spec.receipts):
            here = f"operations[{i}].receipts[{j}]"
            if receipt in seen:  # the second use would always fail (already acked, or its lease changed)
                raise invalid_request(here, f"the same receipt as {seen[receipt]}: settle each delivery once")
            seen[receipt] = here
    return specs


def txn_ops(specs: list[OpSpec], new_id: Callable[[], str]) -> list[TxnOp]:
    """The commands, with message IDs made exactly as the enqueue endpoint makes them."""
    return [
        Enqueue(spec.queue, [m.to_new_message(new_id()) for m in spec.messages])
        if isinstance(spec, EnqueueOp)
        else spec
        for spec in specs
    ]


@dataclass(frozen=True, slots=True)
class TransactRequest:
    transaction_id: str
    operations: list[OpSpec]


def transact(obj: Mapping[str, object]) -> TransactRequest:
    """``POST /v1/transactions``: ``{"transaction_id", "operations": [...]}``, both required."""
    check_fields(obj, ("transaction_id", "operations"))
    transaction_id = client_id(require(obj, "transaction_id"), "transaction_id")
    return TransactRequest(transaction_id, _txn_ops(obj))


def begin(obj: Mapping[str, object]) -> int:
    """``PUT /v1/transactions/{id}``: the optional ``timeout_s`` as milliseconds."""
    check_fields(obj, ("timeout_s",))
    if "timeout_s" not in obj:
        return DEFAULT_TXN_TIMEOUT_MS
    ms = seconds_to_ms(obj["timeout_s"], "timeout_s")
    if not MIN_TXN_TIMEOUT_MS <= ms <= MAX_TXN_TIMEOUT_MS:
        raise invalid_request(
            "timeout_s", f"must be {MIN_TXN_TIMEOUT_MS / 1000:g} to {MAX_TXN_TIMEOUT_MS / 1000:g} seconds"
        )
    return ms


@dataclass(frozen=True, slots=True)
class StageRequest:
    stage_seq: int
    operations: list[OpSpec]


def stage(obj: Mapping[str, object]) -> StageRequest:
    """``POST /v1/transactions/{id}/operations``: ``{"stage_seq": 1, "operations": [...]}``."""
    check_fields(obj, ("stage_seq", "operations"))
    stage_seq = as_int(require(obj, "stage_seq"), "stage_seq", lo=1, hi=INT64_MAX)
    return StageRequest(stage_seq, _txn_ops(obj))


def no_fields(obj: Mapping[str, object]) -> None:
    """A body that may be absent or ``{}`` (commit, abort)."""
    for name in obj:
        raise invalid_request(name, "unknown field (this request takes no fields)")
