"""What the state machine stores per queue, per message and per idempotency key (msgpack, array-like)."""

from __future__ import annotations

import base64
import struct
from enum import IntEnum

import msgspec

from state_machine.config import QueueConfig


class MessageState(IntEnum):
    READY = 0
    LEASED = 1
    DELAYED = 2


class QueueMeta(msgspec.Struct, array_like=True):
    qid: int
    config: QueueConfig
    created_at_ms: int
    next_seq: int = 1
    ready: int = 0
    leased: int = 0
    delayed: int = 0
    dead_lettered: int = 0
    enqueued_total: int = 0
    acked_total: int = 0

    @property
    def depth(self) -> int:
        return self.ready + self.leased + self.delayed


class MessageRecord(msgspec.Struct, array_like=True):
    message_id: str
    body: bytes
    attributes: dict[str, str]
    enqueued_at_ms: int
    state: MessageState
    delivery_count: int = 0
    #: When the lease or delay ends (the message's timer key); 0 while ready.
    due_ms: int = 0
    #: Name of the queue this message was dead-lettered from, if any.
    dead_lettered_from: str | None = None


class DedupRecord(msgspec.Struct, array_like=True):
    message_id: str
    seq: int
    fingerprint: bytes
    expires_ms: int


ENC = msgspec.msgpack.Encoder()
QUEUE_DEC = msgspec.msgpack.Decoder(QueueMeta)
MESSAGE_DEC = msgspec.msgpack.Decoder(MessageRecord)
DEDUP_DEC = msgspec.msgpack.Decoder(DedupRecord)

_RECEIPT = struct.Struct(">BQQQ")
_RECEIPT_VERSION = 1


def make_receipt(qid: int, seq: int, delivery: int) -> str:
    """A receipt names one delivery: (queue incarnation, message seq, delivery number)."""
    return base64.urlsafe_b64encode(_RECEIPT.pack(_RECEIPT_VERSION, qid, seq, delivery)).decode().rstrip("=")


def parse_receipt(receipt: str) -> tuple[int, int, int] | None:
    try:
        raw = base64.urlsafe_b64decode(receipt + "=" * (-len(receipt) % 4))
        version, qid, seq, delivery = _RECEIPT.unpack(raw)
    except (ValueError, struct.error):
        return None
    if version != _RECEIPT_VERSION or make_receipt(qid, seq, delivery) != receipt:
        return None  # only the canonical spelling names a delivery (base64 decoding skips junk characters)
    return int(qid), int(seq), int(delivery)
