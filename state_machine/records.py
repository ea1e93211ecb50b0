"""What the state machine stores per queue, per message, per idempotency key, per acked delivery, per receive
attempt and per transaction (msgpack, array-like)."""

from __future__ import annotations

import base64
import struct
from enum import IntEnum

import msgspec

from state_machine.commands import TxnOp
from state_machine.config import QueueConfig
from state_machine.results import TxnStatus


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


class AckedRecord(msgspec.Struct, array_like=True):
    """An ack deleted message <seq> with delivery <delivery>: that receipt answers ``already_acked`` until
    ``expires_ms`` (the queue's dedup window after the ack)."""

    delivery: int
    expires_ms: int


class AttemptRecord(msgspec.Struct, array_like=True):
    """The deliveries a receive with an attempt ID leased: (seq, delivery count) in delivery order."""

    leases: list[tuple[int, int]]
    expires_ms: int


class TxnKind(IntEnum):
    ONE_SHOT = 0  # Transact
    INTERACTIVE = 1  # BeginTxn, StageTxn..., CommitTxn or AbortTxn


class StoredResult(msgspec.Struct, array_like=True):
    """One committed op's result: an enqueue's (message_id, seq, duplicate) list, or a settle's outcomes."""

    enqueued: list[tuple[str, int, bool]] | None = None
    settled: list[str] | None = None


class TxnRecord(msgspec.Struct, array_like=True):
    kind: TxnKind
    status: TxnStatus
    retention_ms: int
    #: Pending: the deadline at which it aborts by itself. Decided: when the record is forgotten. The record's
    #: ``W`` key names this time.
    due_ms: int
    #: One-shot: the request's fingerprint (a retry must match it).
    fingerprint: bytes = b""
    #: Interactive: stage calls applied so far (the next must be ``staged_calls + 1``), ops and items staged.
    staged_calls: int = 0
    staged_ops: int = 0
    staged_items: int = 0
    decided_index: int | None = None
    reason: str | None = None
    results: list[StoredResult] = []
    #: (op, code, detail, field) of each failure, when aborted because of preconditions.
    failures: list[tuple[int, str, str, str | None]] = []
    #: Interactive: bytes of bodies and attributes staged so far (bounded by MAX_TXN_BYTES).
    staged_bytes: int = 0


class StageRecord(msgspec.Struct, array_like=True):
    """The ops of one stage call of a pending transaction (deleted when it is decided)."""

    fingerprint: bytes
    ops: list[TxnOp]


ENC = msgspec.msgpack.Encoder()
QUEUE_DEC = msgspec.msgpack.Decoder(QueueMeta)
MESSAGE_DEC = msgspec.msgpack.Decoder(MessageRecord)
DEDUP_DEC = msgspec.msgpack.Decoder(DedupRecord)
ACKED_DEC = msgspec.msgpack.Decoder(AckedRecord)
ATTEMPT_DEC = msgspec.msgpack.Decoder(AttemptRecord)
TXN_DEC = msgspec.msgpack.Decoder(TxnRecord)
STAGE_DEC = msgspec.msgpack.Decoder(StageRecord)

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
