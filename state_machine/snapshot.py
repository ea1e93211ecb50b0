"""The snapshot file: a consistent dump of the whole store, checksummed, and its restore.

Layout (integers big-endian):

    b"RQSNAP01" | u64 applied index | u32 n | n bytes of caller metadata (opaque here)
    then per key: u32 key length | u32 value length | key | value
    then b"END!" | u64 number of keys | 32-byte SHA-256 of every byte before the footer

A restore first verifies the whole file, then marks the store ``restoring`` in a synced batch, replaces its
contents in chunks, and clears the mark in a final synced batch. A node that crashes mid-restore finds the mark
on start and knows its state is incomplete.
"""

from __future__ import annotations

import hashlib
import os
import struct
from collections.abc import Iterator
from typing import BinaryIO

from state_machine import keys
from state_machine.kv import KV, ReadKV, WriteSet

MAGIC = b"RQSNAP01"
FOOTER = b"END!"
_HEAD = struct.Struct(">8sQI")
_REC = struct.Struct(">II")
_TAIL = struct.Struct(">4sQ32s")
RESTORE_CHUNK = 4096


class SnapshotCorrupt(Exception):
    """The snapshot file is truncated, has a bad checksum, or is not a snapshot."""


class _HashingWriter:
    def __init__(self, f: BinaryIO) -> None:
        self.f = f
        self.h = hashlib.sha256()

    def write(self, b: bytes) -> None:
        self.h.update(b)
        self.f.write(b)


def dump(kv: ReadKV, path: str, meta: bytes) -> int:
    """Writes every key of ``kv`` to ``path`` and fsyncs it. Returns the number of keys."""
    applied = keys.read_u64(kv.get(keys.APPLIED))
    count = 0
    with open(path, "wb") as f:
        w = _HashingWriter(f)
        w.write(_HEAD.pack(MAGIC, applied, len(meta)) + meta)
        for k, v in kv.scan(b"", b"\xff"):
            if k == keys.RESTORING:
                continue
            w.write(_REC.pack(len(k), len(v)) + k + v)
            count += 1
        f.write(_TAIL.pack(FOOTER, count, w.h.digest()))
        f.flush()
        os.fsync(f.fileno())
    return count


def read_header(path: str) -> tuple[int, bytes]:
    """(applied index, caller metadata) without verifying the body."""
    with open(path, "rb") as f:
        head = f.read(_HEAD.size)
        if len(head) != _HEAD.size:
            raise SnapshotCorrupt(f"{path}: truncated header")
        magic, applied, n = _HEAD.unpack(head)
        if magic != MAGIC:
            raise SnapshotCorrupt(f"{path}: not a raft-queue snapshot (magic {magic!r})")
        meta = f.read(n)
        if len(meta) != n:
            raise SnapshotCorrupt(f"{path}: truncated metadata")
        return int(applied), meta


def _records(path: str) -> Iterator[tuple[bytes, bytes]]:
    """Yields the pairs after verifying the checksum and count of the whole file first."""
    size = os.path.getsize(path)
    if size < _HEAD.size + _TAIL.size:
        raise SnapshotCorrupt(f"{path}: truncated ({size} bytes)")
    with open(path, "rb") as f:
        h = hashlib.sha256()
        remaining = size - _TAIL.size
        while remaining:
            chunk = f.read(min(remaining, 1 << 20))
            if not chunk:
                raise SnapshotCorrupt(f"{path}: truncated")
            h.update(chunk)
            remaining -= len(chunk)
        footer, count, digest = _TAIL.unpack(f.read(_TAIL.size))
        if footer != FOOTER or digest != h.digest():
            raise SnapshotCorrupt(f"{path}: checksum mismatch: the file is damaged")
        f.seek(0)
        _, _, n = _HEAD.unpack(f.read(_HEAD.size))
        f.seek(n, os.SEEK_CUR)
        end = size - _TAIL.size
        seen = 0
        while f.tell() < end:
            klen, vlen = _REC.unpack(f.read(_REC.size))
            k = f.read(klen)
            yield k, f.read(vlen)
            seen += 1
        if seen != count:
            raise SnapshotCorrupt(f"{path}: {seen} records, footer says {count}")


def verify(path: str) -> int:
    """Checks the whole file; returns the number of keys."""
    return sum(1 for _ in _records(path))


def restore(kv: KV, path: str) -> None:
    """Replaces the whole store with the snapshot's contents (verified before anything is touched)."""
    verify(path)
    kv.commit(WriteSet(ranges=[(b"", b"\xff")], writes={keys.RESTORING: b""}), sync=True)
    batch: dict[bytes, bytes | None] = {}
    for k, v in _records(path):
        batch[k] = v
        if len(batch) >= RESTORE_CHUNK:
            kv.commit(WriteSet(writes=batch))
            batch = {}
    batch[keys.RESTORING] = None
    kv.commit(WriteSet(writes=batch), sync=True)
