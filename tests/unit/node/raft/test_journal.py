"""DurableJournal: format, recovery, group commit, compaction crash safety, meta durability."""

from __future__ import annotations

import errno
import logging
import os
import shutil
import tempfile
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test
from pysyncobj.journal import MemoryJournal

import raft_queue.node.raft.journal as journal_module
from raft_queue.node.raft.journal import DurableJournal, JournalCorrupt, JournalDiverged, JournalFailed, JournalSummary
from raft_queue.node.raft.journal_format import (
    HEADER_SIZE,
    RECORD_HEADER_SIZE,
    encode_header,
    encode_record,
    parse_journal,
)


class SimulatedCrash(Exception):
    """Raised by a patched syscall to stop the journal mid-operation, as a power cut would."""


@pytest.fixture
def path(tmp_path: Path) -> str:
    return str(tmp_path / "journal")


@pytest.fixture
def sync_calls(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """Counts the real fsync/fdatasync syscalls (which still run)."""
    calls: Counter[str] = Counter()

    def counting(name: str, real: Callable[[int], None]) -> Callable[[int], None]:
        def call(fd: int) -> None:
            calls[name] += 1
            real(fd)

        return call

    monkeypatch.setattr(os, "fsync", counting("fsync", os.fsync))
    monkeypatch.setattr(os, "fdatasync", counting("fdatasync", os.fdatasync))
    return calls


def filled(path: str, count: int, *, term: int = 1, **kwargs: bool) -> DurableJournal:
    journal = DurableJournal(path, **kwargs)
    for idx in range(1, count + 1):
        journal.add(b"command-%d" % idx, idx, term)
    return journal


def reopened(journal: DurableJournal) -> DurableJournal:
    journal._destroy()
    return DurableJournal(journal.path)


def entries(journal: DurableJournal) -> list[tuple[bytes, int, int]]:
    return journal[:]


def test_new_journal_is_empty_with_defaults(path: str) -> None:
    journal = DurableJournal(path)
    assert (len(journal), journal.first_index, journal.last_index, journal.dirty) == (0, 0, 0, False)
    assert (journal.getCurrentTerm(), journal.getVotedForNodeId(), journal.getRaftCommitIndex()) == (
        0,
        None,
        1,
    )
    assert Path(path).read_bytes() == encode_header()
    journal._destroy()
    assert not os.path.exists(path + ".meta")


def test_round_trip(path: str) -> None:
    journal = filled(path, 3, term=2)
    journal.add(b"", 4, 3)
    expected = [(b"command-1", 1, 2), (b"command-2", 2, 2), (b"command-3", 3, 2), (b"", 4, 3)]
    assert entries(journal) == expected
    journal = reopened(journal)
    assert entries(journal) == expected
    assert (journal.first_index, journal.last_index, journal.dirty) == (1, 4, False)
    journal._destroy()
    journal._destroy()  # idempotent


def test_indexing_and_slicing_match_a_list(path: str) -> None:
    journal = filled(path, 5)
    plain = entries(journal)
    for i in range(-5, 5):
        assert journal[i] == plain[i]
    for bad in (5, -6):
        with pytest.raises(IndexError):
            journal[bad]
    for s in (
        slice(1, 3),
        slice(-2, None),
        slice(3, 100),
        slice(None, -1),
        slice(4, 1),
        slice(None, None, 2),
    ):
        assert journal[s] == plain[s]
        assert isinstance(journal[s], list)
    journal._destroy()


def test_add_refuses_entries_that_could_not_be_reopened(path: str) -> None:
    journal = filled(path, 2, term=3)
    with pytest.raises(ValueError):
        journal.add(b"gap", 4, 3)
    with pytest.raises(ValueError):
        journal.add(b"older term", 3, 2)
    assert journal.last_index == 2
    journal.clear()
    journal.add(b"any start after clear", 17, 1)
    assert entries(reopened(journal)) == [(b"any start after clear", 17, 1)]


# -- group commit ----------------------------------------------------------------------------------------


def test_flush_is_one_fdatasync_for_a_batch_and_free_when_clean(path: str, sync_calls: Counter[str]) -> None:
    journal = DurableJournal(path)
    assert journal.syncs == sync_calls.total() == 3  # creation: the new file, its directory, the open-time sync
    sync_calls.clear()
    journal.flush()
    assert (sync_calls.total(), journal.syncs, journal.dirty) == (0, 3, False)
    for idx in range(1, 201):
        journal.add(b"x" * 100, idx, 1)
    assert sync_calls.total() == 0
    assert journal.dirty
    journal.flush()
    assert sync_calls == Counter(fdatasync=1)
    assert (journal.syncs, journal.dirty) == (4, False)
    journal.flush()
    assert sync_calls == Counter(fdatasync=1)
    journal.add(b"y", 201, 1)
    journal.flush()
    assert (sync_calls, journal.syncs) == (Counter(fdatasync=2), 5)
    journal._destroy()


def test_writes_reach_the_os_before_flush(path: str) -> None:
    journal = filled(path, 3)
    assert DurableJournal.scan(path) == JournalSummary(1, 3, 3, 1, 0)  # a process crash loses nothing
    journal._destroy()


def test_fsync_false_makes_no_sync_syscalls(path: str, sync_calls: Counter[str]) -> None:
    journal = filled(path, 10, fsync=False)
    journal.flush()
    journal.deleteEntriesFrom(8)
    journal.deleteEntriesTo(2)
    journal.setCurrentTerm(4, "127.0.0.1:4321")
    journal.setRaftCommitIndex(7)
    journal.onOneSecondTimer()
    journal.clear()
    journal._destroy()
    assert (sync_calls.total(), journal.syncs) == (0, 0)
    journal = DurableJournal(path, fsync=False)
    assert (len(journal), journal.getCurrentTerm(), journal.getRaftCommitIndex()) == (0, 4, 7)
    journal._destroy()
    assert sync_calls.total() == 0


def test_failed_fsync_poisons_the_journal(path: str, monkeypatch: pytest.MonkeyPatch) -> None:
    journal = filled(path, 3)

    def eio(fd: int) -> None:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(os, "fdatasync", eio)
    with pytest.raises(JournalFailed, match="fsync failed"):
        journal.flush()
    monkeypatch.undo()
    # A retried fsync may "succeed" after the kernel dropped the pages: never report durability again.
    for operation in (journal.flush, lambda: journal.add(b"z", 4, 1), journal.onOneSecondTimer):
        with pytest.raises(JournalFailed):
            operation()
    assert journal.dirty
    journal._destroy()


def test_failed_write_leaves_no_partial_record(path: str, monkeypatch: pytest.MonkeyPatch) -> None:
    journal = filled(path, 2)
    size = os.path.getsize(path)

    def half_then_enospc(fd: int, data: bytes) -> None:
        os.write(fd, data[: len(data) // 2])
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(journal_module, "write_all", half_then_enospc)
    with pytest.raises(OSError, match="No space"):
        journal.add(b"does not fit", 3, 1)
    monkeypatch.undo()
    assert (os.path.getsize(path), journal.last_index, journal.dirty) == (size, 2, True)
    journal.add(b"fits", 3, 1)
    assert entries(reopened(journal))[-1] == (b"fits", 3, 1)


# -- recovery --------------------------------------------------------------------------------------------


def _tail_cases() -> dict[str, Callable[[bytes], bytes]]:
    record = encode_record(b"never flushed", 4, 1)
    return {
        "half header": lambda data: data + record[:10],
        "half command": lambda data: data + record[:-3],
        "garbage": lambda data: data + b"\xde\xad\xbe\xef" * 9,
        "zeros": lambda data: data + bytes(4096),
        "bad checksum": lambda data: data + record[:-1] + b"!",
        "last record damaged": lambda data: data[:-2] + b"??",
    }


@pytest.mark.parametrize("case", list(_tail_cases()))
def test_torn_tail_is_cut_off(path: str, case: str, caplog: pytest.LogCaptureFixture) -> None:
    filled(path, 3)._destroy()
    good = Path(path).read_bytes()
    Path(path).write_bytes(_tail_cases()[case](good))
    torn = os.path.getsize(path)
    kept = 2 if case == "last record damaged" else 3
    valid_end = len(good) - len(encode_record(b"command-3", 3, 1)) if kept == 2 else len(good)

    assert DurableJournal.scan(path) == JournalSummary(1, kept, kept, 1, torn - valid_end)
    assert os.path.getsize(path) == torn  # scan is read-only
    with caplog.at_level(logging.WARNING, logger="raft_queue.node.raft.journal"):
        journal = DurableJournal(path)
    assert f"offset {valid_end} ({torn - valid_end} bytes" in caplog.text
    assert [e[1] for e in entries(journal)] == list(range(1, kept + 1))
    assert os.path.getsize(path) == valid_end
    journal.add(b"after recovery", kept + 1, 1)
    assert entries(reopened(journal))[-1] == (b"after recovery", kept + 1, 1)


def _record_span(path: str, position: int) -> tuple[int, int]:
    parsed = parse_journal(Path(path).read_bytes(), path)
    start = parsed.offsets[position]
    end = parsed.offsets[position + 1] if position + 1 < len(parsed.offsets) else parsed.valid_end
    return start, end


@pytest.mark.parametrize("flip", [0xFF, 0x01, 0x80])
def test_any_damaged_byte_in_a_middle_record_is_corruption(path: str, flip: int) -> None:
    filled(path, 3)._destroy()
    good = Path(path).read_bytes()
    start, end = _record_span(path, 1)
    assert end - start == RECORD_HEADER_SIZE + len(b"command-2")
    for pos in range(start, end):
        damaged = bytearray(good)
        damaged[pos] ^= flip
        Path(path).write_bytes(damaged)
        with pytest.raises(JournalCorrupt, match=rf"journal: offset {start}: damaged record"):
            DurableJournal(path)
        with pytest.raises(JournalCorrupt):
            DurableJournal.scan(path)
        assert Path(path).read_bytes() == damaged  # refused, nothing truncated


def test_term_bit_flip_is_no_longer_silent(path: str) -> None:
    filled(path, 3, term=2)._destroy()
    start, _ = _record_span(path, 1)
    term_offset = start + 16  # u32 crc | u32 len | u64 idx | u64 term
    data = bytearray(Path(path).read_bytes())
    assert data[term_offset : term_offset + 8] == (2).to_bytes(8, "little")
    data[term_offset + 1] = 0xFF  # the stock FileJournal would now read term 65282
    Path(path).write_bytes(data)
    with pytest.raises(JournalCorrupt, match=rf"{path}: offset {start}: damaged record"):
        DurableJournal(path)


@pytest.mark.parametrize(
    ("records", "problem"),
    [
        ([(1, 1), (2, 1), (4, 1)], "index 4 does not follow index 2"),
        ([(5, 1), (5, 1)], "index 5 does not follow index 5"),
        ([(1, 3), (2, 2)], "term 2 at index 2 < term 3"),
    ],
)
def test_invalid_sequence_is_corruption(path: str, records: list[tuple[int, int]], problem: str) -> None:
    body = b"".join(encode_record(b"c", idx, term) for idx, term in records)
    Path(path).write_bytes(encode_header() + body)
    offset = HEADER_SIZE + len(encode_record(b"c", 1, 1)) * (len(records) - 1)
    with pytest.raises(JournalCorrupt, match=rf"offset {offset}: {problem}"):
        DurableJournal(path)


@pytest.mark.parametrize(
    "header",
    [
        b"",
        b"RQJOURN1",
        b"PYSYNCOBJ\0\0\0\0\0\0\0",
        encode_header()[:-1] + b"\0",
        b"RQJOURN2" + encode_header()[8:],
    ],
)
def test_bad_header_is_corruption(path: str, header: bytes) -> None:
    Path(path).write_bytes(header + encode_record(b"c", 1, 1))
    with pytest.raises(JournalCorrupt, match=r"offset 0: bad journal header"):
        DurableJournal(path)


# -- truncation and compaction ---------------------------------------------------------------------------


def test_a_conflicting_add_truncates_and_syncs_before_it_writes(path: str, sync_calls: Counter[str]) -> None:
    journal = filled(path, 5)
    size = os.path.getsize(path)
    keep_until = _record_span(path, 2)[0]
    sync_calls.clear()
    journal.deleteEntriesFrom(2)
    assert (os.path.getsize(path), sync_calls.total(), journal.last_index, journal.pending) == (size, 0, 2, 3)
    journal.deleteEntriesFrom(7)  # nothing to delete
    assert journal.pending == 3

    def size_at_sync(fd: int) -> None:
        sizes.append(os.fstat(fd).st_size)

    sizes: list[int] = []
    journal._sync = lambda fd, data_only: size_at_sync(fd)  # type: ignore[method-assign]
    journal.add(b"new leader", 3, 2)
    assert sizes == [keep_until]  # the truncation was synced before the new record went in
    assert journal.pending == 0
    assert entries(reopened(journal)) == [(b"command-1", 1, 1), (b"command-2", 2, 1), (b"new leader", 3, 2)]


def test_re_added_identical_entries_are_adopted_without_any_write(path: str, sync_calls: Counter[str]) -> None:
    """pysyncobj truncates on every overlapping append_entries and re-adds the same entries at once."""
    journal = filled(path, 5)
    journal.flush()
    before = Path(path).read_bytes()
    sync_calls.clear()
    journal.deleteEntriesFrom(1)
    for idx in (2, 3, 4):
        journal.add(b"command-%d" % idx, idx, 1)
    assert (journal.last_index, journal.pending, journal.dirty) == (4, 1, False)
    assert Path(path).read_bytes() == before and sync_calls.total() == 0
    journal.setRaftCommitIndex(4)  # adopted records were durable already: no flush needed
    assert sync_calls.total() == 0
    journal.add(b"command-5", 5, 1)
    assert (journal.pending, entries(journal)) == (0, entries(reopened(filled(path + "2", 5))))


def test_a_removed_tail_stays_on_disk_until_overwritten(path: str) -> None:
    """A power cut between the truncation and the re-add must not lose acknowledged entries: reopening
    reads the file as if the truncating message had never arrived."""
    journal = filled(path, 6)
    journal.flush()
    journal.deleteEntriesFrom(2)
    journal.add(b"command-3", 3, 1)  # a shorter resend: entries 4..6 are pending
    assert (journal.last_index, journal.pending) == (3, 3)
    assert DurableJournal.scan(path) == JournalSummary(1, 6, 6, 1, 0)
    assert [e[1] for e in entries(reopened(journal))] == [1, 2, 3, 4, 5, 6]


def test_compaction_keeps_the_pending_tail_and_clear_drops_it(path: str) -> None:
    journal = filled(path, 8)
    journal.deleteEntriesFrom(5)
    journal.deleteEntriesTo(2)
    assert ([e[1] for e in entries(journal)], journal.pending) == ([3, 4, 5], 3)
    journal.add(b"command-6", 6, 1)  # still adoptable after the rewrite
    assert (journal.last_index, journal.pending) == (6, 2)
    assert DurableJournal.scan(path) == JournalSummary(3, 8, 6, 1, 0)
    journal.deleteEntriesFrom(0)
    journal.clear()
    assert (len(journal), journal.pending, DurableJournal.scan(path)) == (0, 0, JournalSummary(0, 0, 0, 0, 0))
    journal._destroy()


def test_replacing_a_committed_entry_stops_the_journal(path: str) -> None:
    journal = filled(path, 5)
    journal.setRaftCommitIndex(4)
    journal.setRaftCommitIndex(2)  # pysyncobj lowers it after its own truncation; committed stays committed
    journal.deleteEntriesFrom(2)
    journal.add(b"command-3", 3, 1)
    with pytest.raises(JournalDiverged, match=r"committed entry 4 .* replaced by one of term 2"):
        journal.add(b"another leader's entry", 4, 2)
    with pytest.raises(JournalFailed):
        journal.flush()  # the node's next message stops it
    assert DurableJournal.scan(path).last_index == 5  # nothing on disk was touched


def test_open_syncs_what_a_killed_process_left_in_the_page_cache(path: str, sync_calls: Counter[str]) -> None:
    """Entries written but never flushed were never acknowledged; this run may acknowledge them, so they
    must be durable first (flush() would skip them: the new process has nothing dirty)."""
    crashed = filled(path, 3)
    assert crashed.dirty
    os.close(crashed._fd)  # the process dies: no flush
    sync_calls.clear()
    journal = DurableJournal(path)
    assert (sync_calls.total(), journal.dirty) == (1, False)
    journal._destroy()


def test_compaction_rewrites_the_file(path: str, sync_calls: Counter[str]) -> None:
    journal = filled(path, 6)
    sync_calls.clear()
    journal.deleteEntriesTo(4)
    assert sync_calls == Counter(fsync=2)  # the new file, then the directory
    assert (journal.first_index, journal.last_index, journal.dirty) == (5, 6, False)
    journal.add(b"appended after compaction", 7, 1)
    assert [e[1] for e in entries(reopened(journal))] == [5, 6, 7]
    assert not os.path.exists(path + ".new")


def test_crash_before_the_rename_keeps_the_old_journal(path: str, monkeypatch: pytest.MonkeyPatch) -> None:
    journal = filled(path, 6)
    old = Path(path).read_bytes()

    def crash(src: str, dst: str) -> None:
        raise SimulatedCrash

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(SimulatedCrash):
        journal.deleteEntriesTo(4)
    monkeypatch.undo()
    assert DurableJournal.scan(path + ".new") == JournalSummary(5, 6, 2, 1, 0)  # complete, just not renamed
    assert Path(path).read_bytes() == old
    assert len(journal) == 6
    recovered = DurableJournal(path)
    assert [e[1] for e in entries(recovered)] == [1, 2, 3, 4, 5, 6]
    assert not os.path.exists(path + ".new")
    recovered._destroy()
    journal._destroy()


def test_crash_after_the_rename_has_the_new_journal(path: str, monkeypatch: pytest.MonkeyPatch) -> None:
    journal = filled(path, 6)

    def crash(target: str, sync: object) -> None:
        raise SimulatedCrash

    monkeypatch.setattr(journal_module, "sync_directory", crash)
    with pytest.raises(SimulatedCrash):
        journal.clear()
    monkeypatch.undo()
    recovered = DurableJournal(path)
    assert len(recovered) == 0
    recovered._destroy()
    journal._destroy()


# -- meta ------------------------------------------------------------------------------------------------


def test_set_current_term_is_durable_before_returning(path: str, sync_calls: Counter[str]) -> None:
    journal = DurableJournal(path)
    sync_calls.clear()
    journal.setCurrentTerm(3, "127.0.0.1:4321")
    assert sync_calls == Counter(fsync=2)  # meta temp file + directory after the rename
    assert journal.syncs == 5  # creation (3) + the meta file (2)
    again = DurableJournal(path)  # what a power cut right now would find
    assert (again.getCurrentTerm(), again.getVotedForNodeId()) == (3, "127.0.0.1:4321")
    sync_calls.clear()
    journal.setCurrentTerm(3, "127.0.0.1:4321")
    assert sync_calls.total() == 0  # unchanged values are already durable
    journal.setCurrentTerm(4, None)
    assert DurableJournal(path).getVotedForNodeId() is None
    for j in (journal, again):
        j._destroy()


def test_commit_index_is_stored_lazily_and_never_ahead_of_the_log(path: str, sync_calls: Counter[str]) -> None:
    journal = filled(path, 5)
    journal.flush()
    journal.add(b"six", 6, 1)
    sync_calls.clear()
    journal.setRaftCommitIndex(5)  # covered by the durable prefix: no fsync
    assert (journal.dirty, sync_calls.total()) == (True, 0)
    journal.setRaftCommitIndex(6)  # would pass the durable end: flush first
    assert (journal.dirty, sync_calls) == (False, Counter(fdatasync=1))
    assert journal.getRaftCommitIndex() == 6
    assert DurableJournal(path).getRaftCommitIndex() == 1  # not stored yet
    journal.onOneSecondTimer()
    assert DurableJournal(path).getRaftCommitIndex() == 6
    sync_calls.clear()
    journal.setRaftCommitIndex(6)
    journal.onOneSecondTimer()
    assert sync_calls.total() == 0  # unchanged: nothing stored
    journal.setRaftCommitIndex(7)
    assert reopened(journal).getRaftCommitIndex() == 7  # _destroy stores it


@pytest.mark.parametrize("position", [0, 9, 14, -2])
def test_damaged_meta_is_corruption(path: str, position: int) -> None:
    journal = DurableJournal(path)
    journal.setCurrentTerm(2, "127.0.0.1:4321")
    journal._destroy()
    meta = bytearray(Path(path + ".meta").read_bytes())
    meta[position] ^= 0x01
    Path(path + ".meta").write_bytes(meta)
    with pytest.raises(JournalCorrupt, match=rf"{path}\.meta: offset \d+: "):
        DurableJournal(path)


def test_missing_journal_with_meta_is_corruption(path: str) -> None:
    journal = DurableJournal(path)
    journal.setCurrentTerm(2, None)
    journal._destroy()
    os.remove(path)
    for attempt in (DurableJournal, DurableJournal.scan):
        with pytest.raises(JournalCorrupt, match="journal file missing"):
            attempt(path)


def test_scan(path: str) -> None:
    assert DurableJournal.scan(path) == JournalSummary(0, 0, 0, 0, 0)
    journal = filled(path, 9, term=2)
    journal.add(b"later term", 10, 5)
    journal.deleteEntriesTo(3)
    journal.deleteEntriesFrom(6)
    journal.add(b"another leader", 10, 6)  # replaces the removed tail
    assert DurableJournal.scan(path) == JournalSummary(4, 10, 7, 6, 0)
    journal.clear()
    assert DurableJournal.scan(path) == JournalSummary(0, 0, 0, 0, 0)
    journal._destroy()


# -- model test against pysyncobj's MemoryJournal --------------------------------------------------------


class JournalAgainstMemoryJournal(RuleBasedStateMachine):
    """The log pysyncobj sees is its MemoryJournal's; the file also keeps the removed-but-unreplaced tail
    (``self.removed``, next entry first), which a reopen reads back."""

    def __init__(self) -> None:
        super().__init__()
        self.directory = tempfile.mkdtemp(prefix="rq-journal-")
        self.path = os.path.join(self.directory, "journal")
        self.journal = DurableJournal(self.path)
        self.model = MemoryJournal()
        self.removed: list[tuple[bytes, int, int]] = []

    def teardown(self) -> None:
        self.journal._destroy()
        shutil.rmtree(self.directory)

    @rule(commands=st.lists(st.binary(max_size=24), min_size=1, max_size=4), step=st.integers(0, 2))
    def add(self, commands: list[bytes], step: int) -> None:
        # index 1 is committed from the start (pysyncobj's initial entry), so the model never replaces it
        idx, term = (self.model[-1][1], self.model[-1][2]) if len(self.model) else (step * 7 + 1, 0)
        for command in commands:
            idx, term = idx + 1, term + step
            self._add((command, idx, term))

    @rule(count=st.integers(1, 4))
    def re_add(self, count: int) -> None:
        """What pysyncobj does after an overlapping append_entries: the same entries again."""
        for entry in self.removed[:count]:
            self._add(entry)

    def _add(self, entry: tuple[bytes, int, int]) -> None:
        self.journal.add(*entry)
        self.model.add(*entry)
        self.removed = self.removed[1:] if self.removed and self.removed[0] == entry else []

    @rule(position=st.integers(-3, 12))
    def delete_entries_from(self, position: int) -> None:
        before = self.model[:]
        self.journal.deleteEntriesFrom(position)
        self.model.deleteEntriesFrom(position)
        self.removed = before[len(self.model) :] + self.removed

    @rule(position=st.integers(-3, 12))
    def delete_entries_to(self, position: int) -> None:
        self.journal.deleteEntriesTo(position)
        self.model.deleteEntriesTo(position)

    @rule()
    def clear(self) -> None:
        self.journal.clear()
        self.model.clear()
        self.removed = []

    @rule()
    def flush(self) -> None:
        self.journal.flush()
        assert not self.journal.dirty

    @rule()
    def reopen(self) -> None:
        self.journal._destroy()
        self.journal = DurableJournal(self.path)
        for entry in self.removed:
            self.model.add(*entry)
        self.removed = []

    @rule(data=st.data())
    def read(self, data: st.DataObject) -> None:
        n = len(self.model)
        item = data.draw(st.integers(-n - 2, n + 1) | st.slices(n + 2))
        try:
            expected = self.model[item]
        except IndexError:
            with pytest.raises(IndexError):
                self.journal[item]
        else:
            assert self.journal[item] == expected

    @invariant()
    def same_contents(self) -> None:
        expected = self.model[:]
        assert len(self.journal) == len(expected)
        assert self.journal[:] == expected
        assert self.journal.first_index == (expected[0][1] if expected else 0)
        assert self.journal.last_index == (expected[-1][1] if expected else 0)
        assert self.journal.pending == len(self.removed)
        assert parse_journal(Path(self.path).read_bytes(), self.path).entries == expected + self.removed


def test_matches_pysyncobj_memory_journal() -> None:
    run_state_machine_as_test(
        JournalAgainstMemoryJournal,
        settings=settings(max_examples=150, stateful_step_count=40, deadline=None),
    )
