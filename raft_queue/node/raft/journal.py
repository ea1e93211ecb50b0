"""A durable, checksummed raft journal for pysyncobj, injected through ``pysyncobj.syncobj.createJournal``.

Files (formats in raft_queue.node.raft.journal_format and raft_queue.node.raft.metastore)::

    <path>       b"RQJOURN1" | u32 version | u32 crc32, then one record per entry:
                 u32 crc32(rest) | u32 len | u64 idx | u64 term | command   (idx +1 each, term never drops)
    <path>.meta  currentTerm, votedForNodeId, raftCommitIndex as checksummed JSON

Durability contract:

* add() only writes to the OS (that survives a process crash, not a power loss) and marks the journal
  dirty. flush() makes everything written so far durable with one fdatasync (group commit); the node
  calls it before sending any message that acknowledges entries or a vote. setRaftCommitIndex()
  flushes by itself when the commit index passes the durable end, so a commit (and the client's
  acknowledgement) never outruns the disk, even on a single node that sends nothing.
* deleteEntriesFrom() is lazy, because pysyncobj 0.3.17 calls it on every append_entries that overlaps
  entries the follower already holds (Raft truncates only on a conflict) and re-adds the same entries at
  once. The removed entries stay in the file as a pending tail: add() re-adopts an entry that equals the
  next pending one without writing, and only the first entry that differs truncates the file (fsynced
  before the new record is written, so an append never lands after bytes whose truncation is not durable).
  A power cut inside that handler therefore cannot drop entries this node already acknowledged. Replacing
  an entry at or below the commit index means the replicas diverged: the journal fails (the node stops).
* Reopening yields the whole file, pending tail included: as if the truncating message never arrived.
* deleteEntriesTo() (which keeps the pending tail) and clear() write ``<path>.new``, fsync it, rename it
  over ``<path>`` and fsync the directory: a crash leaves the old or the new complete journal.
* setCurrentTerm() is durable before it returns. The commit index is stored lazily (every second and
  on _destroy), after a flush, so the stored commit index never points past durable entries.
* Open fsyncs the file: a killed process's unflushed writes can still sit in the page cache, and this run
  may acknowledge them (flush() skips a journal that is not dirty).
* On open, an incomplete or damaged last record (an unflushed, hence unacknowledged, write) is cut off
  with a warning. Any other damage raises JournalCorrupt and the node refuses to start.
* A failed fsync leaves the disk state unknown: the journal then raises JournalFailed on every write.
"""

from __future__ import annotations

import logging
import os
from bisect import bisect_right
from dataclasses import replace
from typing import NamedTuple, NoReturn, overload

from pysyncobj.journal import Journal

from raft_queue.node.raft.journal_format import (
    HEADER_SIZE,
    Entry,
    JournalCorrupt,
    JournalError,
    JournalFailed,
    encode_header,
    encode_record,
    parse_journal,
    sync_directory,
    write_all,
    write_new_file,
)
from raft_queue.node.raft.metastore import MetaStore

__all__ = [
    "DurableJournal",
    "Entry",
    "JournalCorrupt",
    "JournalDiverged",
    "JournalError",
    "JournalFailed",
    "JournalSummary",
]

logger = logging.getLogger(__name__)

_APPEND_FLAGS = os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC


class JournalSummary(NamedTuple):
    first_index: int
    last_index: int
    entries: int
    last_term: int
    torn_bytes: int


class JournalDiverged(JournalFailed):
    """A committed entry was about to be replaced by a different one: this replica's log diverged."""


class DurableJournal(Journal):  # type: ignore[misc]  # pysyncobj is untyped
    """pysyncobj's Journal interface over an append-only checksummed file; entries are also kept in memory.

    Single-threaded: pysyncobj's tick thread calls every method, flush() included.
    """

    def __init__(self, path: str, *, fsync: bool = True) -> None:
        self.path = path
        self.syncs = 0
        """fsync/fdatasync calls issued so far (journal, compaction, directory and meta files)."""
        self._fsync = fsync
        self._failed: str | None = None
        self._dirty = False
        self._fd = -1
        self._meta_store = MetaStore(path + ".meta", self._sync)
        _remove_if_exists(path + ".new")  # an uncommitted compaction: the journal at path is authoritative
        if not os.path.exists(path):
            if self._meta_store.exists():
                raise _missing_journal(path)
            self._write_file([])
        self._meta = self._stored_meta = self._meta_store.load()
        with open(path, "rb") as f:
            parsed = parse_journal(f.read(), path)
        self._entries = parsed.entries
        self._offsets = parsed.offsets
        self._end = parsed.valid_end
        self._pending: list[Entry] = []
        """Entries deleteEntriesFrom() removed that are still in the file, the next one last (a stack)."""
        self._pending_offsets: list[int] = []
        self._file_end = parsed.valid_end
        self._durable_end = parsed.valid_end
        self._committed = self._meta.commit_index
        """The highest commit index ever set: entries up to it can never be replaced."""
        self._fd = os.open(path, _APPEND_FLAGS)
        try:
            if parsed.torn_bytes:
                logger.warning(
                    "journal %s: torn tail at offset %d (%d bytes dropped): incomplete or damaged last record",
                    path,
                    parsed.valid_end,
                    parsed.torn_bytes,
                )
                self._cut(parsed.valid_end)
            # What a killed process wrote may still be only in the page cache: make it durable before this
            # node acknowledges any of it.
            self._sync(self._fd, False)
        except BaseException:
            os.close(self._fd)
            raise

    @classmethod
    def scan(cls, path: str) -> JournalSummary:
        """Summarise the journal at path without modifying anything (a missing journal is empty)."""
        try:
            with open(path, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            if os.path.exists(path + ".meta"):
                raise _missing_journal(path) from None
            return JournalSummary(0, 0, 0, 0, 0)
        parsed = parse_journal(data, path)
        entries = parsed.entries
        if not entries:
            return JournalSummary(0, 0, 0, 0, parsed.torn_bytes)
        return JournalSummary(entries[0][1], entries[-1][1], len(entries), entries[-1][2], parsed.torn_bytes)

    # -- state --------------------------------------------------------------------------------------------

    @property
    def dirty(self) -> bool:
        """True when something was written to the OS that flush() has not made durable yet."""
        return self._dirty

    @property
    def first_index(self) -> int:
        return self._entries[0][1] if self._entries else 0

    @property
    def last_index(self) -> int:
        return self._entries[-1][1] if self._entries else 0

    @property
    def size_bytes(self) -> int:
        """Bytes of the entries the journal holds (its file, up to the last entry it reads back)."""
        return self._end

    @property
    def pending(self) -> int:
        """How many removed entries are still in the file, waiting to be re-added or overwritten."""
        return len(self._pending)

    def flush(self) -> None:
        """Make every write so far durable with one fdatasync; a no-op when nothing changed.

        Raises JournalFailed once the journal is unusable, dirty or not, so the node stops before it sends
        anything else."""
        self._check_usable()
        if not self._dirty:
            return
        self._sync(self._fd, True)
        self._dirty = False
        self._durable_end = self._file_end

    # -- pysyncobj's Journal interface --------------------------------------------------------------------

    def add(self, command: bytes, idx: int, term: int) -> None:
        self._check_usable()
        if self._entries and (idx != self.last_index + 1 or term < self._entries[-1][2]):
            raise ValueError(f"{self.path}: entry ({idx}, {term}) cannot follow {self._entries[-1][1:]}")
        entry = (bytes(command), idx, term)
        if self._pending:
            if self._pending[-1] == entry:
                self._readopt()
                return
            self._truncate_pending(entry)
        record = encode_record(*entry)
        try:
            write_all(self._fd, record)
        except OSError:
            self._cut(self._end)
            raise
        self._entries.append(entry)
        self._offsets.append(self._end)
        self._end += len(record)
        self._file_end = self._end
        self._dirty = True

    def deleteEntriesFrom(self, entryFrom: int) -> None:
        start = slice(entryFrom, None).indices(len(self._entries))[0]
        if start >= len(self._entries):
            return
        self._check_usable()
        self._pending.extend(reversed(self._entries[start:]))
        self._pending_offsets.extend(reversed(self._offsets[start:]))
        self._end = self._offsets[start]
        del self._entries[start:]
        del self._offsets[start:]

    def deleteEntriesTo(self, entryTo: int) -> None:
        start = slice(entryTo, None).indices(len(self._entries))[0]
        if start > 0:
            kept = self._entries[start:]
            self._rewrite(kept, pending=self._pending[::-1])

    def clear(self) -> None:
        if self._entries or self._pending:
            self._rewrite([], pending=[])

    @overload
    def __getitem__(self, item: int) -> Entry: ...
    @overload
    def __getitem__(self, item: slice) -> list[Entry]: ...
    def __getitem__(self, item: int | slice) -> Entry | list[Entry]:
        return self._entries[item]

    def __len__(self) -> int:
        return len(self._entries)

    def _destroy(self) -> None:
        """Flush, store a pending commit index and close; idempotent."""
        if self._fd < 0:
            return
        try:
            if self._failed is None:
                self.flush()
                self._store_meta()
        finally:
            os.close(self._fd)
            self._fd = -1

    def setRaftCommitIndex(self, raftCommitIndex: int) -> None:
        if raftCommitIndex > self._durable_index():
            self.flush()
        self._meta = replace(self._meta, commit_index=raftCommitIndex)
        self._committed = max(self._committed, raftCommitIndex)

    def getRaftCommitIndex(self) -> int:
        return self._meta.commit_index

    def setCurrentTerm(self, term: int, votedForNodeId: str | None) -> None:
        self._check_usable()
        self._meta = replace(self._meta, current_term=term, voted_for=votedForNodeId)
        self._store_meta()

    def getCurrentTerm(self) -> int:
        return self._meta.current_term

    def getVotedForNodeId(self) -> str | None:
        return self._meta.voted_for

    def onOneSecondTimer(self) -> None:
        self._check_usable()
        self._store_meta()

    # -- internals ----------------------------------------------------------------------------------------

    def _store_meta(self) -> None:
        if self._meta == self._stored_meta:
            return
        if self._meta.commit_index > self._durable_index():
            self.flush()
        meta = self._meta
        self._meta_store.store(meta)
        self._stored_meta = meta

    def _durable_index(self) -> int:
        """The index of the last entry whose record is durable (first_index - 1 when none is)."""
        if self._end <= self._durable_end:
            return self.last_index
        durable = bisect_right(self._offsets, self._durable_end) - 1  # entries whose successor starts in time
        if durable > 0:
            return self._entries[durable - 1][1]
        return self.first_index - 1 if self._entries else 0

    def _readopt(self) -> None:
        """The next pending entry was added again: it is in the file already, at the right place."""
        self._entries.append(self._pending.pop())
        self._offsets.append(self._pending_offsets.pop())
        self._end = self._pending_offsets[-1] if self._pending_offsets else self._file_end

    def _truncate_pending(self, entry: Entry) -> None:
        """entry differs from the pending one at its index: the pending tail really goes, durably, first."""
        _, idx, term = self._pending[-1]
        if idx <= self._committed:
            self._failed = (
                f"committed entry {idx} (term {term}) would be replaced by one of term {entry[2]}: "
                f"this replica's log diverged from the leader's"
            )
            raise JournalDiverged(f"{self.path}: {self._failed}")
        self._cut(self._end)
        self._sync(self._fd, False)
        self._dirty = False
        self._durable_end = self._end

    def _cut(self, offset: int) -> None:
        """Truncate the file to offset; pending entries and unflushed appends beyond it are dropped."""
        try:
            os.ftruncate(self._fd, offset)
        except OSError as exc:
            self._fail(f"cannot truncate to offset {offset}", exc)
        self._end = self._file_end = offset
        self._durable_end = min(self._durable_end, offset)
        self._pending.clear()
        self._pending_offsets.clear()

    def _rewrite(self, entries: list[Entry], *, pending: list[Entry]) -> None:
        """Durably replace the file by entries followed by pending (kept, still removed from the log)."""
        self._check_usable()
        offsets, end = self._write_file(entries + pending)
        try:
            fd = os.open(self.path, _APPEND_FLAGS)
        except OSError as exc:
            self._fail("cannot reopen the journal after a rewrite", exc)
        os.close(self._fd)
        self._fd = fd
        kept = len(entries)
        self._entries, self._offsets = entries, offsets[:kept]
        self._pending, self._pending_offsets = pending[::-1], offsets[kept:][::-1]
        self._end = offsets[kept] if pending else end
        self._file_end = self._durable_end = end
        self._dirty = False

    def _write_file(self, entries: list[Entry]) -> tuple[list[int], int]:
        """Durably replace the journal file by one holding entries; returns (offsets, end)."""
        records = [encode_record(*entry) for entry in entries]
        offsets = []
        end = HEADER_SIZE
        for record in records:
            offsets.append(end)
            end += len(record)
        tmp = self.path + ".new"
        write_new_file(tmp, [encode_header(), *records], self._sync)
        os.replace(tmp, self.path)
        try:
            sync_directory(self.path, self._sync)
        except OSError as exc:
            self._fail("cannot fsync the journal directory after a rename", exc)
        return offsets, end

    def _sync(self, fd: int, data_only: bool) -> None:
        if not self._fsync:
            return
        try:
            if data_only:
                getattr(os, "fdatasync", os.fsync)(fd)
            else:
                os.fsync(fd)
        except OSError as exc:
            self._fail("fsync failed", exc)
        self.syncs += 1

    def _check_usable(self) -> None:
        if self._failed is not None:
            raise JournalFailed(f"{self.path}: journal unusable after an earlier error: {self._failed}")

    def _fail(self, what: str, exc: OSError) -> NoReturn:
        self._failed = f"{what}: {exc}"
        raise JournalFailed(f"{self.path}: {self._failed}") from exc


def _remove_if_exists(path: str) -> None:
    try:
        os.remove(path)
    except FileNotFoundError:
        return
    logger.warning("journal: removed %s left by an interrupted compaction", path)


def _missing_journal(path: str) -> JournalCorrupt:
    return JournalCorrupt(f"{path}: offset 0: journal file missing but {path}.meta exists")
