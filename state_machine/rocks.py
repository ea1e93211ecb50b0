"""RocksKV: the ``KV`` protocol on RocksDB (rocksdict, raw bytes mode).

Writes are not synced: the fsynced Raft journal is the durable record, and RocksDB is rebuilt from it (or from
the fsynced snapshot file) after a crash. What RocksDB must guarantee, and does with its WAL, is that each
WriteBatch survives whole or not at all, so the stored applied index always matches the stored state.

No RocksDB snapshots: in rocksdict 0.3.29 ``Snapshot.iter()``/``items()`` read the live database (only point
reads honour the snapshot), so consistency of reads against writes is the state machine's lock instead.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from typing import Any

from rocksdict import (
    AccessType,
    BlockBasedOptions,
    Cache,
    Checkpoint,
    Options,
    Rdict,
    ReadOptions,
    WriteBatch,
    WriteOptions,
)

from state_machine.kv import WriteSet
from state_machine.seek_hints import SeekHints

MEMTABLE_BYTES = 16 * 1024 * 1024
BLOCK_CACHE_BYTES = 16 * 1024 * 1024


def _scan(source: Any, start: bytes, end: bytes) -> Iterator[tuple[bytes, bytes]]:
    # The upper bound stops RocksDB at ``end``: without it, a seek into a range with no live key steps over
    # every tombstone after ``end`` until it finds a live key (the lease timers of a busy queue: measured at a
    # sixth of the leader's samples while a backlog drained).
    opts = ReadOptions()
    opts.set_iterate_upper_bound(end)
    it = source.iter(opts)
    it.seek(start)
    while it.valid():
        k = it.key()
        if k >= end:
            break
        yield k, it.value()
        it.next()


def _scan_learning(source: Any, hints: SeekHints, start: bytes, end: bytes) -> Iterator[tuple[bytes, bytes]]:
    """``_scan`` from the hinted key on, teaching the hints where the first live key is."""
    seek = max(start, hints.seek(start))
    if seek >= end:
        return
    first = True
    for k, v in _scan(source, seek, end):
        if first:
            hints.learned(start, k)
            first = False
        yield k, v
    if first:
        hints.learned(start, end)


class RocksKV:
    def __init__(self, path: str, *, remove_on_close: bool = False, read_only: bool = False) -> None:
        """``read_only`` opens a store another process (or instance) has open for writing, e.g. a frozen copy that
        a snapshot writer process reads; ``commit`` then fails."""
        opts = Options(raw_mode=True)
        opts.create_if_missing(not read_only)
        # Memory: 16 MiB memtables and a 16 MiB block cache. The defaults (64 MiB memtables) put a node
        # with a large backlog over its memory budget; the journal, not RocksDB, is what makes writes durable,
        # so smaller memtables cost only more (background) flushes.
        opts.set_write_buffer_size(MEMTABLE_BYTES)
        # Four, so that a flush that falls behind does not stall writes (a stalled write blocks apply on the
        # tick thread, and with it heartbeats).
        opts.set_max_write_buffer_number(4)
        # Write SST files and the WAL out as they grow (sync_file_range every MiB) instead of leaving it to the
        # kernel or to one fsync at the end of a flush or compaction: a burst of writeback on this file system
        # makes the Raft journal's fdatasync on the tick thread wait behind it.
        opts.set_bytes_per_sync(1 << 20)
        opts.set_wal_bytes_per_sync(1 << 20)
        table = BlockBasedOptions()
        table.set_block_cache(Cache(BLOCK_CACHE_BYTES))
        opts.set_block_based_table_factory(table)
        self._db = Rdict(path, opts, access_type=AccessType.read_only() if read_only else AccessType.read_write())
        self._wo = WriteOptions()
        self._wo.sync = False
        self._sync_wo = WriteOptions()
        self._sync_wo.sync = True
        self.path = path
        self._remove_on_close = remove_on_close
        self._hints = SeekHints()

    def get(self, key: bytes) -> bytes | None:
        v: bytes | None = self._db.get(key)
        return v

    def scan(self, start: bytes, end: bytes) -> Iterator[tuple[bytes, bytes]]:
        return _scan_learning(self._db, self._hints, start, end)

    def commit(self, ws: WriteSet, *, sync: bool = False) -> None:
        wb = WriteBatch(raw_mode=True)
        for a, b in ws.ranges:
            wb.delete_range(a, b)
        for k, v in ws.writes.items():
            if v is None:
                wb.delete(k)
            else:
                wb.put(k, v)
                self._hints.wrote(k)
        self._db.write(wb, self._sync_wo if sync else self._wo)

    def frozen_copy(self, path: str) -> RocksKV:
        """A RocksDB checkpoint in ``path`` (it must not exist; same file system: SST files are hard-linked, the
        memtable is flushed first), opened as its own store; ``close()`` on it removes the directory."""
        Checkpoint(self._db).create_checkpoint(path)
        return RocksKV(path, remove_on_close=True)

    def close(self) -> None:
        self._db.close()
        if self._remove_on_close:
            shutil.rmtree(self.path, ignore_errors=True)


__all__ = ["RocksKV"]
