"""Record codec and file helpers for the raft journal (the contract is in raft_queue.node.raft.journal).

Little-endian layout::

    header  16 bytes      b"RQJOURN1" | u32 format version (1) | u32 crc32(magic + version)
    record  24 + n bytes  u32 crc32(rest of record) | u32 n | u64 idx | u64 term | n bytes command
"""

from __future__ import annotations

import os
import struct
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass

MAGIC = b"RQJOURN1"
FORMAT_VERSION = 1
_HEADER = struct.Struct("<8sII")
_RECORD = struct.Struct("<IIQQ")
_BODY = struct.Struct("<IQQ")
HEADER_SIZE = _HEADER.size
RECORD_HEADER_SIZE = _RECORD.size
_U32_MAX = 2**32 - 1
_U64_MAX = 2**64 - 1
_WRITE_CHUNK = 1 << 20

Entry = tuple[bytes, int, int]
"""(command, raft index, raft term), exactly what pysyncobj stores and reads back."""

SyncFn = Callable[[int, bool], None]
"""sync(fd, data_only): fdatasync (data_only) or fsync a descriptor."""


class JournalError(Exception):
    """Base class of the journal's errors."""


class JournalCorrupt(JournalError):
    """The journal or its meta file is damaged beyond an unflushed tail: the node must not start."""


class JournalFailed(JournalError):
    """An I/O error (e.g. a failed fsync) left the on-disk state unknown: the process should exit."""


def encode_header() -> bytes:
    head = MAGIC + struct.pack("<I", FORMAT_VERSION)
    return head + struct.pack("<I", zlib.crc32(head))


def encode_record(command: bytes, idx: int, term: int) -> bytes:
    if len(command) > _U32_MAX or not 0 <= idx <= _U64_MAX or not 0 <= term <= _U64_MAX:
        raise ValueError(f"entry out of range for the journal format: idx={idx} term={term}")
    body = _BODY.pack(len(command), idx, term) + command
    return struct.pack("<I", zlib.crc32(body)) + body


@dataclass(frozen=True)
class ParsedJournal:
    entries: list[Entry]
    offsets: list[int]
    valid_end: int
    torn_bytes: int


def parse_journal(data: bytes, path: str) -> ParsedJournal:
    """Decode a whole journal file; a damaged tail is reported (torn_bytes), never repaired here."""
    magic, version, crc = _HEADER.unpack_from(data) if len(data) >= HEADER_SIZE else (b"", 0, 0)
    if magic != MAGIC or crc != zlib.crc32(data[:12]):
        raise JournalCorrupt(f"{path}: offset 0: bad journal header (magic {magic!r}, {len(data)} bytes)")
    if version != FORMAT_VERSION:
        raise JournalCorrupt(f"{path}: offset 8: unsupported journal format version {version}")
    view = memoryview(data)
    entries: list[Entry] = []
    offsets: list[int] = []
    off = HEADER_SIZE
    while off < len(data):
        record = _record_at(view, off)
        if record is None:
            following = _next_valid_record(view, off + 1)
            if following is not None:
                raise JournalCorrupt(
                    f"{path}: offset {off}: damaged record (bad length or checksum) "
                    f"followed by a valid record at offset {following}"
                )
            return ParsedJournal(entries, offsets, off, len(data) - off)
        command, idx, term, end = record
        if entries:
            _, prev_idx, prev_term = entries[-1]
            if idx != prev_idx + 1:
                raise JournalCorrupt(f"{path}: offset {off}: index {idx} does not follow index {prev_idx}")
            if term < prev_term:
                raise JournalCorrupt(f"{path}: offset {off}: term {term} at index {idx} < term {prev_term}")
        entries.append((command, idx, term))
        offsets.append(off)
        off = end
    return ParsedJournal(entries, offsets, off, 0)


def _record_at(view: memoryview, off: int) -> tuple[bytes, int, int, int] | None:
    """The record at off as (command, idx, term, end offset), or None if incomplete or bad checksum."""
    if len(view) - off < RECORD_HEADER_SIZE:
        return None
    crc, size, idx, term = _RECORD.unpack_from(view, off)
    end = off + RECORD_HEADER_SIZE + size
    if end > len(view) or zlib.crc32(view[off + 4 : end]) != crc:
        return None
    return bytes(view[off + RECORD_HEADER_SIZE : end]), idx, term, end


def _next_valid_record(view: memoryview, start: int) -> int | None:
    """Offset of the first intact record at or after start (byte by byte: lengths may be damaged)."""
    for pos in range(start, len(view) - RECORD_HEADER_SIZE + 1):
        if _record_at(view, pos) is not None:
            return pos
    return None


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def write_new_file(path: str, chunks: Iterable[bytes], sync: SyncFn) -> None:
    """Create (or truncate) path, write chunks and fsync it."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
    try:
        pending: list[bytes] = []
        size = 0
        for chunk in chunks:
            pending.append(chunk)
            size += len(chunk)
            if size >= _WRITE_CHUNK:
                write_all(fd, b"".join(pending))
                pending, size = [], 0
        write_all(fd, b"".join(pending))
        sync(fd, False)
    finally:
        os.close(fd)


def sync_directory(path: str, sync: SyncFn) -> None:
    """fsync the directory holding path, making a rename or creation in it durable."""
    fd = os.open(os.path.dirname(os.path.abspath(path)), os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        sync(fd, False)
    finally:
        os.close(fd)
