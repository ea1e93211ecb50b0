"""SeekHints: where a prefix scan may start so that it does not step over a queue's tombstones one by one.

A queue is consumed from its front: every lease deletes the first keys of the ready index, every ack the first
timer keys. RocksDB keeps each deleted key as a tombstone until compaction drops it, and an iterator seeking to
the start of the prefix must step over every one of them before it finds the first live key. Measured before
this existed: draining a 60,000-message backlog spent a quarter of the leader's samples in those scans, and
the cost grows with the number of messages consumed since the last compaction.

For a scan start ``S`` the hint is a key ``H`` with no live key in ``[S, H)``; the scan seeks to ``H``. A scan
learns ``H`` (the first live key it met, or its end when it met none), deletions keep the property, and a put of
a key ``k`` in ``[S, H)`` lowers ``H`` to ``k``. ``H`` never leaves ``S``'s prefix, so only hints whose ``S`` is a
prefix of ``k`` can be affected: a put checks one dict entry per distinct prefix length. Hints live in memory
only; a restarted node relearns them on its first scans. They change how fast a scan finds its keys, never which
keys it finds (``tests/unit/state_machine/test_seek_hints.py`` checks this against a store without hints).
"""

from __future__ import annotations

from state_machine.kv import prefix_end

#: Above this many hints (one or two per queue ever scanned) they are all dropped and relearned.
MAX_HINTS = 100_000


class SeekHints:
    def __init__(self) -> None:
        self._hints: dict[bytes, bytes] = {}
        self._lengths: set[int] = set()

    def seek(self, start: bytes) -> bytes:
        """Where a scan from ``start`` may begin."""
        return self._hints.get(start, start)

    def learned(self, start: bytes, first_live: bytes) -> None:
        """A scan from ``start`` met no live key before ``first_live`` (its first key, or its end)."""
        if first_live[: len(start)] != start and first_live != prefix_end(start):
            return  # past the prefix: a put elsewhere could land in between unnoticed
        if start not in self._hints and len(self._hints) >= MAX_HINTS:
            self.clear()
        self._hints[start] = first_live
        self._lengths.add(len(start))

    def wrote(self, key: bytes) -> None:
        """A live key was put: a hint beyond it must come back to it."""
        for n in self._lengths:
            start = key[:n]
            hint = self._hints.get(start)
            if hint is not None and key < hint:
                self._hints[start] = key

    def clear(self) -> None:
        self._hints.clear()
        self._lengths.clear()
