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
    for tag in (b"M", b"R", b"T", b"D"):
        p = tag + _U64.pack(qid)
        out.append((p, tag + _U64.pack(qid + 1)))
    return out


def dlq_source(dlq: str, source: str) -> bytes:
    return b"L" + dlq.encode() + b"\x00" + source.encode()


def dlq_source_prefix(dlq: str) -> bytes:
    return b"L" + dlq.encode() + b"\x00"
