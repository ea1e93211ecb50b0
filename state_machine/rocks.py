"""RocksKV: the ``KV`` protocol on RocksDB (rocksdict, raw bytes mode).

Writes are not synced: the fsynced Raft journal is the durable record, and RocksDB is rebuilt from it (or from
the fsynced snapshot file) after a crash. What RocksDB must guarantee, and does with its WAL, is that each
WriteBatch survives whole or not at all, so the stored applied index always matches the stored state.

No RocksDB snapshots: in rocksdict 0.3.29 ``Snapshot.iter()``/``items()`` read the live database (only point
reads honour the snapshot), so consistency of reads against writes is the state machine's lock instead.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from rocksdict import Options, Rdict, WriteBatch, WriteOptions

from state_machine.kv import WriteSet


def _scan(source: Any, start: bytes, end: bytes) -> Iterator[tuple[bytes, bytes]]:
    it = source.iter()
    it.seek(start)
    while it.valid():
        k = it.key()
        if k >= end:
            break
        yield k, it.value()
        it.next()


class RocksKV:
    def __init__(self, path: str) -> None:
        opts = Options(raw_mode=True)
        opts.create_if_missing(True)
        self._db = Rdict(path, opts)
        self._wo = WriteOptions()
        self._wo.sync = False
        self._sync_wo = WriteOptions()
        self._sync_wo.sync = True
        self.path = path

    def get(self, key: bytes) -> bytes | None:
        v: bytes | None = self._db.get(key)
        return v

    def scan(self, start: bytes, end: bytes) -> Iterator[tuple[bytes, bytes]]:
        return _scan(self._db, start, end)

    def commit(self, ws: WriteSet, *, sync: bool = False) -> None:
        wb = WriteBatch(raw_mode=True)
        for a, b in ws.ranges:
            wb.delete_range(a, b)
        for k, v in ws.writes.items():
            if v is None:
                wb.delete(k)
            else:
                wb.put(k, v)
        self._db.write(wb, self._sync_wo if sync else self._wo)

    def close(self) -> None:
        self._db.close()


__all__ = ["RocksKV"]
