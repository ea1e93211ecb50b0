"""RocksKV against MemoryKV, and the snapshot file: round trips, damage, interrupted restores."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from state_machine import KV, MemoryKV, QueueStateMachine, encode_entry, snapshot
from state_machine import keys as k
from state_machine.kv import FrozenKV, WriteSet
from state_machine.rocks import RocksKV
from state_machine.snapshot import SnapshotCorrupt
from tests.unit.state_machine.reference_model import RandomWorkload


class InjectedFailure(Exception):
    pass


class FailingKV:
    """Passes commits through to ``inner`` until ``fail_at`` (1-based), which raises instead (a crash)."""

    def __init__(self, inner: KV, fail_at: int) -> None:
        self.inner = inner
        self.fail_at = fail_at
        self.commits = 0

    def get(self, key: bytes) -> bytes | None:
        return self.inner.get(key)

    def scan(self, start: bytes, end: bytes) -> Iterator[tuple[bytes, bytes]]:
        return self.inner.scan(start, end)

    def frozen_copy(self, path: str) -> FrozenKV:
        return self.inner.frozen_copy(path)

    def commit(self, ws: WriteSet, *, sync: bool = False) -> None:
        self.commits += 1
        if self.commits == self.fail_at:
            raise InjectedFailure(f"commit {self.commits}")
        self.inner.commit(ws, sync=sync)


def contents(kv: KV) -> list[tuple[bytes, bytes]]:
    return list(kv.scan(b"", b"\xff"))


def reads(sm: QueueStateMachine) -> tuple[object, ...]:
    return (sm.applied_index, sm.clock_ms, sm.list_queues(), [sm.queue_info(n) for n in ("dl", "q1", "q2", "q3")])


def open_rocks(path: Path) -> RocksKV:
    return RocksKV(str(path))


def run_workload(machines: list[QueueStateMachine], seed: int, entries: int, start: int = 1) -> None:
    """Applies the same random entries to every machine; their results must agree."""
    workload = RandomWorkload(seed)
    for index in range(start, start + entries):
        data = encode_entry(workload.next_entry())
        results = [sm.apply(index, data) for sm in machines]
        assert all(r == results[0] for r in results[1:]), results
        workload.observe(results[0])


class Populated:
    """A machine on a MemoryKV after a few hundred random entries."""

    def __init__(self) -> None:
        self.kv = MemoryKV()
        self.sm = QueueStateMachine(self.kv)
        run_workload([self.sm], seed=11, entries=300)


@pytest.fixture
def populated() -> Populated:
    return Populated()


# RocksKV behaves like MemoryKV


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_rocks_and_memory_stores_are_byte_identical(tmp_path: Path, seed: int) -> None:
    rocks = open_rocks(tmp_path / "db")
    try:
        memory = MemoryKV()
        on_rocks, on_memory = QueueStateMachine(rocks), QueueStateMachine(memory)
        workload = RandomWorkload(seed)
        for index in range(1, 250):
            data = encode_entry(workload.next_entry())
            got, expected = on_rocks.apply(index, data), on_memory.apply(index, data)
            assert got == expected
            workload.observe(expected)
            if index % 25 == 0:
                assert contents(rocks) == memory.items()
                assert reads(on_rocks) == reads(on_memory)
        assert contents(rocks) == memory.items()
        assert len(memory.items()) > 10
    finally:
        rocks.close()


def test_rocks_keeps_its_state_across_reopen(tmp_path: Path) -> None:
    rocks = open_rocks(tmp_path / "db")
    run_workload([QueueStateMachine(rocks)], seed=4, entries=120)
    before = contents(rocks)
    rocks.close()
    again = open_rocks(tmp_path / "db")
    try:
        assert contents(again) == before
    finally:
        again.close()


def test_rocks_scan_bounds_and_range_deletes(tmp_path: Path) -> None:
    rocks = open_rocks(tmp_path / "db")
    try:
        memory = MemoryKV()
        keys = [b"a", b"a\x00", b"ab", b"b", b"\x00x", b"\xfe\xff"]
        for kv in (rocks, memory):
            kv.commit(WriteSet(writes={key: key * 2 for key in keys}))
            kv.commit(WriteSet(ranges=[(b"a\x00", b"b")], writes={b"ab": b"again", b"a": None}))
        assert (
            contents(rocks)
            == memory.items()
            == [(b"\x00x", b"\x00x\x00x"), (b"ab", b"again"), (b"b", b"bb"), (b"\xfe\xff", b"\xfe\xff\xfe\xff")]
        )
        assert list(rocks.scan(b"ab", b"b")) == list(memory.scan(b"ab", b"b")) == [(b"ab", b"again")]
        assert rocks.get(b"a") is None and rocks.get(b"b") == b"bb"
    finally:
        rocks.close()


# snapshots


def test_snapshot_restores_identically_into_rocks_and_memory(tmp_path: Path, populated: Populated) -> None:
    path = str(tmp_path / "snap")
    count = populated.sm.dump(path, b"caller meta")
    assert snapshot.read_header(path) == (populated.sm.applied_index, b"caller meta")
    assert snapshot.verify(path) == count
    source = populated.kv.items()
    assert count == len(source)

    memory = MemoryKV()
    rocks = open_rocks(tmp_path / "db")
    try:
        into_memory, into_rocks = QueueStateMachine(memory), QueueStateMachine(rocks)
        into_memory.restore(path)
        into_rocks.restore(path)
        assert memory.items() == contents(rocks) == source
        assert reads(into_memory) == reads(into_rocks) == reads(populated.sm)
        assert not into_memory.restoring and not into_rocks.restoring
        # and they go on the same way
        start = populated.sm.applied_index + 1
        run_workload([populated.sm, into_memory, into_rocks], seed=12, entries=100, start=start)
        assert memory.items() == contents(rocks) == populated.kv.items()
    finally:
        rocks.close()


def test_restore_replaces_everything_that_was_there(tmp_path: Path, populated: Populated) -> None:
    path = str(tmp_path / "snap")
    populated.sm.dump(path, b"")
    target_kv = MemoryKV()
    target = QueueStateMachine(target_kv)
    run_workload([target], seed=99, entries=200)
    assert target_kv.items() != populated.kv.items()
    target.restore(path)
    assert target_kv.items() == populated.kv.items()


def test_a_dump_from_rocks_restores_into_memory(tmp_path: Path) -> None:
    rocks = open_rocks(tmp_path / "db")
    try:
        on_rocks = QueueStateMachine(rocks)
        run_workload([on_rocks], seed=5, entries=150)
        path = str(tmp_path / "snap")
        on_rocks.dump(path, b"m")
        memory_kv = MemoryKV()
        memory = QueueStateMachine(memory_kv)
        memory.restore(path)
        assert memory_kv.items() == contents(rocks)
        assert reads(memory) == reads(on_rocks)
    finally:
        rocks.close()


def test_the_restoring_mark_is_never_dumped(tmp_path: Path) -> None:
    kv = MemoryKV()
    kv.commit(WriteSet(writes={k.RESTORING: b"", k.APPLIED: k.u64(3), b"Qx": b"?"}))
    path = str(tmp_path / "snap")
    assert snapshot.dump(kv, path, b"") == 2
    target = MemoryKV()
    snapshot.restore(target, path)
    assert target.items() == [(k.APPLIED, k.u64(3)), (b"Qx", b"?")]


def small_snapshot(tmp_path: Path) -> tuple[str, bytes]:
    sm = QueueStateMachine(MemoryKV())
    run_workload([sm], seed=3, entries=80)
    path = str(tmp_path / "snap")
    sm.dump(path, b"meta")
    return path, Path(path).read_bytes()


def prepared_target() -> tuple[MemoryKV, list[tuple[bytes, bytes]]]:
    target = MemoryKV()
    run_workload([QueueStateMachine(target)], seed=8, entries=40)
    return target, target.items()


def test_a_flipped_byte_anywhere_is_detected_and_the_target_is_untouched(tmp_path: Path) -> None:
    path, good = small_snapshot(tmp_path)
    assert 200 < len(good) < 20_000
    target, before = prepared_target()
    for at in range(len(good)):
        damaged = bytearray(good)
        damaged[at] ^= 0x01 if at % 2 else 0xFF
        Path(path).write_bytes(bytes(damaged))
        with pytest.raises(SnapshotCorrupt):
            snapshot.restore(target, path)
        assert target.items() == before, at


def test_a_flipped_byte_leaves_a_rocks_target_untouched(tmp_path: Path) -> None:
    path, good = small_snapshot(tmp_path)
    rocks = open_rocks(tmp_path / "db")
    try:
        run_workload([QueueStateMachine(rocks)], seed=8, entries=40)
        before = contents(rocks)
        for at in range(0, len(good), max(1, len(good) // 40)):
            damaged = bytearray(good)
            damaged[at] ^= 0x10
            Path(path).write_bytes(bytes(damaged))
            with pytest.raises(SnapshotCorrupt):
                QueueStateMachine(rocks).restore(path)
            assert contents(rocks) == before
    finally:
        rocks.close()


def test_every_truncation_and_any_extension_is_detected(tmp_path: Path) -> None:
    path, good = small_snapshot(tmp_path)
    target, before = prepared_target()
    for cut in range(len(good)):
        Path(path).write_bytes(good[:cut])
        with pytest.raises(SnapshotCorrupt):
            snapshot.restore(target, path)
    for extra in (b"\x00", b"END!", good[-44:]):
        Path(path).write_bytes(good + extra)
        with pytest.raises(SnapshotCorrupt):
            snapshot.restore(target, path)
    assert target.items() == before


def test_a_file_that_is_not_a_snapshot(tmp_path: Path) -> None:
    path = tmp_path / "snap"
    path.write_bytes(b"NOTASNAP" + b"\x00" * 100)
    with pytest.raises(SnapshotCorrupt):
        snapshot.read_header(str(path))
    with pytest.raises(SnapshotCorrupt):
        snapshot.verify(str(path))


# interrupted restores


@pytest.mark.parametrize("fail_at", [2, 3, "last"])
def test_an_interrupted_restore_leaves_the_restoring_mark(
    tmp_path: Path, populated: Populated, monkeypatch: pytest.MonkeyPatch, fail_at: int | str
) -> None:
    monkeypatch.setattr(snapshot, "RESTORE_CHUNK", 50)  # several chunks
    path = str(tmp_path / "snap")
    keys_in_snapshot = populated.sm.dump(path, b"")
    commits = 1 + keys_in_snapshot // 50 + 1  # the mark, the full chunks, the last batch that clears the mark
    inner = MemoryKV()
    crashing = FailingKV(inner, commits if fail_at == "last" else int(fail_at))
    with pytest.raises(InjectedFailure):
        QueueStateMachine(crashing).restore(path)
    assert QueueStateMachine(inner).restoring
    assert inner.get(k.RESTORING) == b""
    # a complete restore afterwards clears it
    QueueStateMachine(inner).restore(path)
    assert not QueueStateMachine(inner).restoring
    assert inner.items() == populated.kv.items()


def test_the_restoring_mark_survives_reopening_rocks(
    tmp_path: Path, populated: Populated, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(snapshot, "RESTORE_CHUNK", 50)
    path = str(tmp_path / "snap")
    populated.sm.dump(path, b"")
    rocks = open_rocks(tmp_path / "db")
    run_workload([QueueStateMachine(rocks)], seed=6, entries=30)
    with pytest.raises(InjectedFailure):
        snapshot.restore(FailingKV(rocks, 3), path)  # the mark and one chunk made it
    rocks.close()
    again = open_rocks(tmp_path / "db")
    try:
        assert QueueStateMachine(again).restoring
        assert len(contents(again)) == 1 + 50  # the mark and the first chunk; the old state is gone
    finally:
        again.close()


# streaming writes, and the two depths of verification


def test_the_dump_streams_in_chunks_and_is_made_durable_as_it_goes(
    tmp_path: Path, populated: Populated, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One fsync at the end of a 300 MB dump held up the journal's fdatasync on every node; memory must not grow
    with the store either: every write is one chunk (plus at most one record), and it is synced every few."""
    monkeypatch.setattr(snapshot, "WRITE_CHUNK", 512)
    monkeypatch.setattr(snapshot, "SYNC_EVERY", 2048)
    writes: list[int] = []
    syncs: list[int] = []
    real_write, real_fdatasync = os.write, os.fdatasync

    def write(fd: int, data: bytes) -> int:
        writes.append(len(data))
        written: int = real_write(fd, data)
        return written

    def fdatasync(fd: int) -> None:
        syncs.append(sum(writes))
        real_fdatasync(fd)

    monkeypatch.setattr(os, "write", write)
    monkeypatch.setattr(os, "fdatasync", fdatasync)
    path = str(tmp_path / "snap")
    count = populated.sm.dump(path, b"meta")
    size = Path(path).stat().st_size
    assert sum(writes) == size
    biggest_record = max(8 + len(key) + len(value) for key, value in populated.kv.items())
    assert max(writes[:-1]) < 512 + biggest_record + 64  # the first carries the header, the last the footer
    assert len(syncs) >= size // (2048 + 512 + biggest_record) - 1
    assert all(b - a <= 2048 + 512 + biggest_record for a, b in zip([0, *syncs], syncs, strict=False))
    assert snapshot.verify(path) == count == len(populated.kv.items())
    target = MemoryKV()
    snapshot.restore(target, path)
    assert target.items() == populated.kv.items()


def test_the_checksum_covers_every_byte_but_the_footers_count_which_verify_checks(tmp_path: Path) -> None:
    path, good = small_snapshot(tmp_path)
    count = snapshot.verify(path)
    assert snapshot.verify_checksum(path) == count
    count_at = len(good) - 40  # footer: b"END!" | u64 count | 32-byte digest
    for at in range(len(good)):
        damaged = bytearray(good)
        damaged[at] ^= 0x01
        Path(path).write_bytes(bytes(damaged))
        if count_at <= at < count_at + 8:
            assert snapshot.verify_checksum(path) != count  # a wrong count, which only the full walk catches
        else:
            with pytest.raises(SnapshotCorrupt):
                snapshot.verify_checksum(path)
        with pytest.raises(SnapshotCorrupt):
            snapshot.verify(path)


def test_records_are_read_back_across_chunk_boundaries(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """restore reads the file in chunks: records split across them (and bigger than one) come back whole."""
    kv = MemoryKV()
    values = {bytes([i]) * (i % 5 + 1): bytes([i]) * (i * 37 % 300) for i in range(1, 250)}
    values[k.APPLIED] = k.u64(7)
    kv.commit(WriteSet(writes=dict(values)))
    path = str(tmp_path / "snap")
    snapshot.dump(kv, path, b"m")
    for chunk in (1, 7, 64, 1 << 20):
        monkeypatch.setattr(snapshot, "READ_CHUNK", chunk)
        target = MemoryKV()
        snapshot.restore(target, path)
        assert target.items() == kv.items()
