"""Commands: what one Raft log entry carries, and the versioned codec that turns them into bytes.

An ``Entry`` is one log entry: the leader's (or proposing node's) wall-clock stamp and a batch of operations
packed by group commit. Everything that must be identical on every replica (time, message IDs) is inside it.

Wire format of an entry: one version byte, then a msgpack array. An unknown version means this node runs
older code than the proposer: the node must stop rather than guess (``UnsupportedVersion``). Version 2 added
transactions and ``Receive.receive_attempt_id``; version-1 entries (no such fields or tags) still decode, since
a missing trailing field takes its default. Bytes that carry
a known version but do not decode are the same garbage on every replica (the journal checksums each record),
so the state machine rejects the whole entry deterministically and applies none of it (``CodecError``).
"""

from __future__ import annotations

import msgspec

from state_machine.config import QueueConfig

CODEC_VERSION = 2
#: Versions this code decodes (older entries stay in journals and snapshots after an upgrade).
DECODABLE_VERSIONS = frozenset({1, 2})


class NewMessage(msgspec.Struct, frozen=True, array_like=True):
    message_id: str
    body: bytes
    attributes: dict[str, str] = {}
    delay_ms: int = 0
    idempotency_key: str | None = None
    #: Digest of (body, attributes, delay) so that a reused idempotency key with another payload is detected;
    #: empty for a message without a key (nothing is ever compared with it).
    fingerprint: bytes = b""


class CreateQueue(msgspec.Struct, frozen=True, array_like=True, tag="cq"):
    name: str
    config: QueueConfig


class DeleteQueue(msgspec.Struct, frozen=True, array_like=True, tag="dq"):
    name: str


class Enqueue(msgspec.Struct, frozen=True, array_like=True, tag="eq"):
    """Enqueue one or more messages atomically: all are accepted or none is."""

    queue: str
    messages: list[NewMessage]


class Receive(msgspec.Struct, frozen=True, array_like=True, tag="rc"):
    queue: str
    max_messages: int = 1
    #: None: the queue's default.
    visibility_timeout_ms: int | None = None
    #: A retried receive with the same attempt ID (per queue, within ``RECEIVE_ATTEMPT_TTL_MS``) returns the
    #: deliveries of the first attempt that are still leased, with the same receipts, instead of leasing more.
    receive_attempt_id: str | None = None


class Ack(msgspec.Struct, frozen=True, array_like=True, tag="ak"):
    queue: str
    receipts: list[str]


class Nack(msgspec.Struct, frozen=True, array_like=True, tag="nk"):
    queue: str
    receipts: list[str]
    delay_ms: int = 0


class Extend(msgspec.Struct, frozen=True, array_like=True, tag="ex"):
    queue: str
    receipts: list[str]
    visibility_timeout_ms: int


class Barrier(msgspec.Struct, frozen=True, array_like=True, tag="br"):
    """Changes nothing; its commit proves the proposer's view is current (a linearizable read point)."""


#: What a transaction may contain: enqueues to any queue, and settling deliveries by receipt.
TxnOp = Enqueue | Ack | Nack | Extend


class Transact(msgspec.Struct, frozen=True, array_like=True, tag="tx"):
    """A one-shot transaction: every op applies, or none does. Committed ones are recorded under the ID until
    ``now + retention_ms``; a retry with the same ID and fingerprint returns the recorded outcome, with another
    fingerprint it is refused (``transaction_conflict``). One whose preconditions fail is not recorded."""

    transaction_id: str
    #: Digest of the request as the client sent it (ops in order), computed by the proposer.
    fingerprint: bytes
    ops: list[TxnOp]
    retention_ms: int


class BeginTxn(msgspec.Struct, frozen=True, array_like=True, tag="tb"):
    """Opens an interactive transaction that aborts by itself at ``now + timeout_ms`` unless committed."""

    transaction_id: str
    timeout_ms: int
    retention_ms: int


class StageTxn(msgspec.Struct, frozen=True, array_like=True, tag="ts"):
    """Adds ops to a pending transaction. ``stage_seq`` numbers a transaction's stage calls from 1, so that a
    retried stage is recognised (same seq and fingerprint: a no-op) instead of staging twice."""

    transaction_id: str
    stage_seq: int
    fingerprint: bytes
    ops: list[TxnOp]


class CommitTxn(msgspec.Struct, frozen=True, array_like=True, tag="tc"):
    transaction_id: str


class AbortTxn(msgspec.Struct, frozen=True, array_like=True, tag="ta"):
    transaction_id: str


Command = (
    CreateQueue
    | DeleteQueue
    | Enqueue
    | Receive
    | Ack
    | Nack
    | Extend
    | Barrier
    | Transact
    | BeginTxn
    | StageTxn
    | CommitTxn
    | AbortTxn
)


class Entry(msgspec.Struct, frozen=True, array_like=True):
    now_ms: int
    ops: list[Command]


class CodecError(ValueError):
    """The bytes carry our version but are not a valid entry."""


class UnsupportedVersion(RuntimeError):
    """The entry was written by a newer codec than this node understands."""

    def __init__(self, version: int) -> None:
        super().__init__(
            f"log entry has codec version {version}, this node understands up to {CODEC_VERSION}: "
            "upgrade this node before it applies more of the log"
        )
        self.version = version


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(Entry)


def encode_entry(entry: Entry) -> bytes:
    return bytes((CODEC_VERSION,)) + _encoder.encode(entry)


def decode_entry(data: bytes) -> Entry:
    if not data:
        raise CodecError("empty entry")
    version = data[0]
    if version > CODEC_VERSION:
        raise UnsupportedVersion(version)
    if version not in DECODABLE_VERSIONS:
        raise CodecError(f"unknown codec version {version}")
    try:
        return _decoder.decode(data[1:])
    except (msgspec.DecodeError, ValueError) as exc:  # ValueError: e.g. invalid UTF-8 in a string field
        raise CodecError(f"{type(exc).__name__}: {exc}") from exc


def fingerprint(body: bytes, attributes: dict[str, str], delay_ms: int) -> bytes:
    """A digest of what an enqueue asks for; the same idempotency key with another fingerprint is refused."""
    import hashlib

    h = hashlib.blake2b(digest_size=16)
    h.update(len(body).to_bytes(8, "big"))
    h.update(body)
    for k in sorted(attributes):
        v = attributes[k].encode()
        kb = k.encode()
        h.update(len(kb).to_bytes(4, "big") + kb + len(v).to_bytes(4, "big") + v)
    h.update(delay_ms.to_bytes(8, "big", signed=True))
    return h.digest()


def txn_fingerprint(ops: list[TxnOp]) -> bytes:
    """A digest of what a transaction (or one stage call) asks for, message IDs left out (a retry generates new
    ones): the same transaction ID with another fingerprint is refused."""
    import hashlib

    h = hashlib.blake2b(digest_size=16)
    for op in ops:
        if isinstance(op, Enqueue):
            canonical: object = [
                "eq",
                op.queue,
                [
                    [m.fingerprint or fingerprint(m.body, m.attributes, m.delay_ms), m.idempotency_key]
                    for m in op.messages
                ],
            ]
        elif isinstance(op, Nack):
            canonical = ["nk", op.queue, op.receipts, op.delay_ms]
        elif isinstance(op, Extend):
            canonical = ["ex", op.queue, op.receipts, op.visibility_timeout_ms]
        else:
            canonical = ["ak", op.queue, op.receipts]
        encoded = _encoder.encode(canonical)
        h.update(len(encoded).to_bytes(8, "big") + encoded)
    return h.digest()
