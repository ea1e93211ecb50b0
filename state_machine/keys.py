"""The RocksDB key schema. Integers are big-endian so that byte order is numeric order.

\\x00applied                     -> u64   last Raft index applied (written in every entry's batch)
\\x00clock                       -> u64   state machine clock, ms (never goes backwards)
\\x00next_qid                    -> u64   queue incarnation counter
\\x00restoring                   -> b""   present while a snapshot is being loaded: state incomplete
Q <name>                        -> QueueMeta
M <qid> <seq>                   -> MessageRecord
R <qid> <seq>                   -> b""   ready index (FIFO by seq)
T <qid> <due ms> <seq>          -> b""   timer index: a lease or a delay that ends at <due>
D <qid> <idempotency key>       -> DedupRecord
X <expires ms> <qid> <key>      -> b""   dedup expiry index, swept in order
L <dlq name> \x00 <source name>  -> b""   which queues dead-letter into <dlq>
K <qid> <seq>                   -> AckedRecord     an acked delivery, remembered for the queue's dedup window
A <qid> <attempt id>            -> AttemptRecord   a receive attempt's deliveries, for RECEIVE_ATTEMPT_TTL_MS
E <expires ms> <record key>     -> b""   expiry index of K and A records, swept in order
J <transaction id>              -> TxnRecord
W <due ms> <transaction id>     -> b""   transaction timer: a pending one's deadline, a decided one's expiry
S <u16 len> <txn id> <u32 n>    -> StageRecord     the ops of stage call n of a pending transaction
"""

from __future__ import annotations

import struct

APPLIED = b"\x00applied"
CLOCK = b"\x00clock"
NEXT_QID = b"\x00next_qid"
RESTORING = b"\x00restoring"

_U64 = struct.Struct(">Q")
_QQ = struct.Struct(">QQ")
_QQQ = struct.Struct(">QQQ")
_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")


def u64(n: int) -> bytes:
    return _U64.pack(n)


def read_u64(b: bytes | None, default: int = 0) -> int:
    return default if b is None else int(_U64.unpack(b)[0])


def queue(name: str) -> bytes:
    return b"Q" + name.encode()


QUEUE_PREFIX = b"Q"


def queue_name(key: bytes) -> str:
    return key[1:].decode()


def message(qid: int, seq: int) -> bytes:
    return b"M" + _QQ.pack(qid, seq)


def ready(qid: int, seq: int) -> bytes:
    return b"R" + _QQ.pack(qid, seq)


def ready_prefix(qid: int) -> bytes:
    return b"R" + _U64.pack(qid)


def seq_of_ready(key: bytes) -> int:
    return int(_QQ.unpack_from(key, 1)[1])


def timer(qid: int, due_ms: int, seq: int) -> bytes:
    return b"T" + _QQQ.pack(qid, due_ms, seq)


def timer_prefix(qid: int) -> bytes:
    return b"T" + _U64.pack(qid)


def timer_upto(qid: int, due_ms: int) -> bytes:
    """End key (exclusive) for timers of ``qid`` due at or before ``due_ms``."""
    return b"T" + _QQ.pack(qid, due_ms + 1)


def parse_timer(key: bytes) -> tuple[int, int, int]:
    qid, due, seq = _QQQ.unpack_from(key, 1)
    return int(qid), int(due), int(seq)


def dedup(qid: int, key: str) -> bytes:
    return b"D" + _U64.pack(qid) + key.encode()


def dedup_expiry(expires_ms: int, qid: int, key: str) -> bytes:
    return b"X" + _QQ.pack(expires_ms, qid) + key.encode()


def dedup_expiry_upto(now_ms: int) -> bytes:
    return b"X" + _U64.pack(now_ms + 1)


def parse_dedup_expiry(key: bytes) -> tuple[int, int, str]:
    expires, qid = _QQ.unpack_from(key, 1)
    return int(expires), int(qid), key[17:].decode()


def qid_ranges(qid: int) -> list[tuple[bytes, bytes]]:
    """Every key range that belongs to one queue incarnation (for delete)."""
    out = []
    for tag in (b"M", b"R", b"T", b"D", b"K", b"A"):
        p = tag + _U64.pack(qid)
        out.append((p, tag + _U64.pack(qid + 1)))
    return out


def dlq_source(dlq: str, source: str) -> bytes:
    return b"L" + dlq.encode() + b"\x00" + source.encode()


def dlq_source_prefix(dlq: str) -> bytes:
    return b"L" + dlq.encode() + b"\x00"


# acked deliveries and receive attempts (per queue incarnation), and their shared expiry index


def acked(qid: int, seq: int) -> bytes:
    return b"K" + _QQ.pack(qid, seq)


def receive_attempt(qid: int, attempt_id: str) -> bytes:
    return b"A" + _U64.pack(qid) + attempt_id.encode()


EXPIRY_PREFIX = b"E"


def expiry(expires_ms: int, record_key: bytes) -> bytes:
    return b"E" + _U64.pack(expires_ms) + record_key


def expiry_upto(now_ms: int) -> bytes:
    """End key (exclusive) of the expiry entries due at or before ``now_ms``."""
    return b"E" + _U64.pack(now_ms + 1)


def parse_expiry(key: bytes) -> tuple[int, bytes]:
    """(expires, key of the record that expires)."""
    return int(_U64.unpack_from(key, 1)[0]), key[9:]


# transactions (global: a transaction may touch several queues)


def txn(transaction_id: str) -> bytes:
    return b"J" + transaction_id.encode()


TXN_DUE_PREFIX = b"W"


def txn_due(due_ms: int, transaction_id: str) -> bytes:
    return b"W" + _U64.pack(due_ms) + transaction_id.encode()


def txn_due_upto(now_ms: int) -> bytes:
    return b"W" + _U64.pack(now_ms + 1)


def parse_txn_due(key: bytes) -> tuple[int, str]:
    return int(_U64.unpack_from(key, 1)[0]), key[9:].decode()


def txn_stage_prefix(transaction_id: str) -> bytes:
    """The stage records of one transaction; the length prefix keeps one ID from being a prefix of another."""
    raw = transaction_id.encode()
    return b"S" + _U16.pack(len(raw)) + raw


def txn_stage(transaction_id: str, stage_seq: int) -> bytes:
    return txn_stage_prefix(transaction_id) + _U32.pack(stage_seq)
