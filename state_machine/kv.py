"""The ordered key-value store the state machine runs on, and the overlay that makes one entry atomic.

``KV`` is what a store must offer: point reads, ordered range scans, and an atomic ``commit`` of a
``WriteSet``. ``MemoryKV`` is the plain implementation used by tests; ``state_machine.rocks.RocksKV`` is the
production one. ``Overlay`` buffers writes over any KV (reads see the buffered writes), so applying a log entry
builds one ``WriteSet`` and commits it in one RocksDB WriteBatch together with the applied index; an operation
that is rejected discards its child overlay and leaves no trace.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Protocol


@dataclass
class WriteSet:
    """Range deletions (applied first), then puts (bytes) and deletes (None) in key order."""

    ranges: list[tuple[bytes, bytes]] = field(default_factory=list)
    writes: dict[bytes, bytes | None] = field(default_factory=dict)


class ReadKV(Protocol):
    def get(self, key: bytes) -> bytes | None: ...

    def scan(self, start: bytes, end: bytes) -> Iterator[tuple[bytes, bytes]]:
        """Ascending pairs with start <= key < end."""
        ...


class FrozenKV(ReadKV, Protocol):
    """A point-in-time copy of a store: later commits to the store do not change it."""

    def close(self) -> None:
        """Releases the copy (and removes any files it took)."""
        ...


class KV(ReadKV, Protocol):
    def commit(self, ws: WriteSet, *, sync: bool = False) -> None:
        """Applies the whole write set atomically; ``sync`` makes it durable before returning."""
        ...

    def frozen_copy(self, path: str) -> FrozenKV:
        """A point-in-time copy of the whole store, made quickly so that a snapshot can be written from it while
        commits go on (RocksDB: a checkpoint in the new directory ``path``, hard links to its files)."""
        ...


def prefix_end(prefix: bytes) -> bytes:
    """The smallest key greater than every key that starts with ``prefix``."""
    p = bytearray(prefix)
    while p and p[-1] == 0xFF:
        p.pop()
    if not p:
        return b"\xff" * (len(prefix) + 1)
    p[-1] += 1
    return bytes(p)


def _in_ranges(key: bytes, ranges: list[tuple[bytes, bytes]]) -> bool:
    return any(a <= key < b for a, b in ranges)


class MemoryKV:
    """A sorted in-memory KV for tests and the reference model."""

    def __init__(self) -> None:
        self._data: dict[bytes, bytes] = {}
        self._keys: list[bytes] = []

    def get(self, key: bytes) -> bytes | None:
        return self._data.get(key)

    def scan(self, start: bytes, end: bytes) -> Iterator[tuple[bytes, bytes]]:
        i = bisect.bisect_left(self._keys, start)
        keys = self._keys
        while i < len(keys) and keys[i] < end:
            k = keys[i]
            yield k, self._data[k]
            i += 1

    def commit(self, ws: WriteSet, *, sync: bool = False) -> None:
        for a, b in ws.ranges:
            lo, hi = bisect.bisect_left(self._keys, a), bisect.bisect_left(self._keys, b)
            for k in self._keys[lo:hi]:
                del self._data[k]
            del self._keys[lo:hi]
        for k, v in ws.writes.items():
            if v is None:
                if k in self._data:
                    del self._data[k]
                    self._keys.pop(bisect.bisect_left(self._keys, k))
            else:
                if k not in self._data:
                    bisect.insort(self._keys, k)
                self._data[k] = v

    def items(self) -> list[tuple[bytes, bytes]]:
        return [(k, self._data[k]) for k in self._keys]

    def frozen_copy(self, path: str) -> MemoryKV:
        copy = MemoryKV()
        copy._data = dict(self._data)
        copy._keys = list(self._keys)
        return copy

    def close(self) -> None:
        return None


class Overlay:
    """Buffered writes over a base store; reads see them. ``write_set()`` is what to commit."""

    def __init__(self, base: ReadKV) -> None:
        self._base = base
        self._writes: dict[bytes, bytes | None] = {}
        self._sorted: list[bytes] = []
        self._ranges: list[tuple[bytes, bytes]] = []

    def get(self, key: bytes) -> bytes | None:
        if key in self._writes:
            return self._writes[key]
        if self._ranges and _in_ranges(key, self._ranges):
            return None
        return self._base.get(key)

    def put(self, key: bytes, value: bytes) -> None:
        if key not in self._writes:
            bisect.insort(self._sorted, key)
        self._writes[key] = value

    def delete(self, key: bytes) -> None:
        if key not in self._writes:
            bisect.insort(self._sorted, key)
        self._writes[key] = None

    def delete_range(self, start: bytes, end: bytes) -> None:
        lo, hi = bisect.bisect_left(self._sorted, start), bisect.bisect_left(self._sorted, end)
        for k in self._sorted[lo:hi]:
            del self._writes[k]
        del self._sorted[lo:hi]
        self._ranges.append((start, end))

    def scan(self, start: bytes, end: bytes) -> Iterator[tuple[bytes, bytes]]:
        """Merged view; a snapshot of the overlay's own keys is taken when the scan starts."""
        lo, hi = bisect.bisect_left(self._sorted, start), bisect.bisect_left(self._sorted, end)
        mine = [(k, self._writes[k]) for k in self._sorted[lo:hi]]
        ranges = list(self._ranges)
        base = (kv for kv in self._base.scan(start, end) if not (ranges and _in_ranges(kv[0], ranges)))
        i = 0
        for bk, bv in base:
            while i < len(mine) and mine[i][0] < bk:
                mk, mv = mine[i]
                i += 1
                if mv is not None:
                    yield mk, mv
            if i < len(mine) and mine[i][0] == bk:
                mk, mv = mine[i]
                i += 1
                if mv is not None:
                    yield mk, mv
                continue
            yield bk, bv
        for mk, mv in mine[i:]:
            if mv is not None:
                yield mk, mv

    def first(self, start: bytes, end: bytes) -> tuple[bytes, bytes] | None:
        return next(self.scan(start, end), None)

    def absorb(self, child: Overlay) -> None:
        """Takes over a child overlay's writes (the child was built on top of this overlay)."""
        for a, b in child._ranges:
            self.delete_range(a, b)
        for k in child._sorted:
            v = child._writes[k]
            if v is None:
                self.delete(k)
            else:
                self.put(k, v)

    def write_set(self) -> WriteSet:
        return WriteSet(ranges=list(self._ranges), writes={k: self._writes[k] for k in self._sorted})
