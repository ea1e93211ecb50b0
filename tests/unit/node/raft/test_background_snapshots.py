"""BackgroundSnapshots behind fsm.QueueFSM's serializer and checker: the dump is written off the tick thread from a
frozen copy (by the writer process, or on the dump thread itself where a test holds the dump), and pysyncobj's own
Serializer (the object SyncObj drives) sees SERIALIZING, then SUCCESS once, with the dump already renamed into
place."""

from __future__ import annotations

import io
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from pysyncobj.config import SERIALIZER_STATE

from raft_queue.node.raft import dump_writer
from raft_queue.node.raft.background_snapshots import BackgroundSnapshots, DumpStarted, Writer, write_in_process
from raft_queue.node.raft.fsm import QueueFSM, read_verified
from raft_queue.node.raft.journal import DurableJournal
from state_machine import snapshot
from state_machine.commands import CreateQueue, Enqueue, Entry, NewMessage, encode_entry
from state_machine.config import QueueConfig
from state_machine.kv import FrozenKV, ReadKV
from state_machine.machine import QueueStateMachine
from state_machine.rocks import RocksKV
from tests.unit.node.raft.test_fsm import meta_at, pysyncobj_serializer, wait_for_outcome

DEADLINE_S = 30.0
NOW_MS = 1_800_000_000_000


def entry(index: int, messages: int = 1) -> bytes:
    if index == 1:
        return encode_entry(Entry(NOW_MS, [CreateQueue("q", QueueConfig())]))
    batch = [NewMessage(f"m{index}-{i}", b"x" * 64) for i in range(messages)]
    return encode_entry(Entry(NOW_MS, [Enqueue("q", batch)]))


def write_in_thread(source: FrozenKV, checkpoint_dir: str, path: str, meta: bytes) -> int:
    """A ``Writer`` on the dump thread itself, for the tests that hold the dump (``Gate``) in this process."""
    return snapshot.dump(source, path, meta)


class Node:
    def __init__(self, root: Path, writer: Writer = write_in_thread) -> None:
        root.mkdir(parents=True, exist_ok=True)
        self.root = root
        self.kv = RocksKV(str(root / "state"))
        self.machine = QueueStateMachine(self.kv)
        self.dump = str(root / "snapshot")
        self.checkpoint = str(root / "state-checkpoint")
        self.journal = DurableJournal(str(root / "journal"))
        self.snapshots = BackgroundSnapshots(self.machine, self.dump, self.checkpoint, writer)
        self.fsm = QueueFSM(self.machine, self.journal, lambda applied: None, self.snapshots)
        self.serializer = pysyncobj_serializer(self.fsm, self.dump)

    def apply_to(self, last: int, messages: int = 1) -> None:
        for index in range(self.machine.applied_index + 1, last + 1):
            self.machine.apply(index, entry(index, messages))

    def wait_for_outcome(self) -> int:
        return wait_for_outcome(self.serializer)

    def close(self) -> None:
        self.snapshots.join(DEADLINE_S)
        self.journal._destroy()
        self.kv.close()


class Gate:
    """Holds every dump until ``release`` is set; ``writing`` is set once one started."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.release = threading.Event()
        self.writing = threading.Event()
        real_dump = snapshot.dump

        def held_dump(kv: ReadKV, path: str, meta: bytes) -> int:
            self.writing.set()
            assert self.release.wait(DEADLINE_S)
            return real_dump(kv, path, meta)

        monkeypatch.setattr(snapshot, "dump", held_dump)


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Node]:
    n = Node(tmp_path / "n1")
    yield n
    n.close()


def test_the_dump_is_the_state_at_the_call_even_while_applies_go_on(node: Node) -> None:
    node.apply_to(40, messages=50)
    frozen = dict(node.kv.scan(b"", b"\xff"))
    node.serializer.serialize((None, *meta_at(40)), 39)
    assert not os.path.exists(node.dump + ".tmp"), "pysyncobj's own rename must not have run"
    node.apply_to(60, messages=50)  # the tick thread keeps applying while the dump is written
    assert node.wait_for_outcome() == SERIALIZER_STATE.SUCCESS
    assert node.serializer.checkSerializing()[0] == SERIALIZER_STATE.NOT_SERIALIZING  # SUCCESS is reported once
    applied, meta = read_verified(node.dump)
    assert applied == 40 and meta == meta_at(40)
    restored = QueueStateMachine(RocksKV(str(node.root / "restored")))
    restored.restore(node.dump)
    assert dict(restored._kv.scan(b"", b"\xff")) == frozen
    assert not os.path.exists(node.checkpoint) and not os.path.exists(node.dump + ".partial")
    assert node.snapshots.dumps_written == 1


def test_reads_are_not_held_while_the_dump_is_written(node: Node, monkeypatch: pytest.MonkeyPatch) -> None:
    """The old synchronous dump held the state machine's lock (and the tick thread) for the whole write."""
    gate = Gate(monkeypatch)
    node.apply_to(10)
    with pytest.raises(DumpStarted):
        node.fsm.serialize(node.dump + ".tmp", meta_at(10))
    assert gate.writing.wait(DEADLINE_S)
    assert node.serializer.checkSerializing()[0] == SERIALIZER_STATE.SERIALIZING
    assert node.machine.lock.acquire(timeout=1.0), "a read could not take the state machine's lock"
    node.machine.lock.release()
    node.apply_to(12)  # and the tick thread applies
    gate.release.set()
    assert node.wait_for_outcome() == SERIALIZER_STATE.SUCCESS


def test_a_failed_dump_is_reported_once_and_leaves_the_old_snapshot(
    node: Node, monkeypatch: pytest.MonkeyPatch
) -> None:
    node.apply_to(10)
    node.serializer.serialize((None, *meta_at(10)), 9)
    assert node.wait_for_outcome() == SERIALIZER_STATE.SUCCESS
    before = Path(node.dump).read_bytes()

    def broken_replace(src: str, dst: str) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    node.apply_to(20)
    node.serializer.serialize((None, *meta_at(20)), 19)
    assert node.wait_for_outcome() == SERIALIZER_STATE.FAILED
    assert node.serializer.checkSerializing()[0] == SERIALIZER_STATE.NOT_SERIALIZING
    assert Path(node.dump).read_bytes() == before
    assert not os.path.exists(node.checkpoint)


def test_leftovers_of_a_crash_mid_dump_are_removed_at_start(tmp_path: Path) -> None:
    root = tmp_path / "n1"
    (root / "state-checkpoint").mkdir(parents=True)
    (root / "state-checkpoint" / "000001.sst").write_bytes(b"x")
    (root / "snapshot.partial").write_bytes(b"half a dump")
    node = Node(root)
    try:
        assert not (root / "state-checkpoint").exists() and not (root / "snapshot.partial").exists()
    finally:
        node.close()


def test_a_second_dump_while_one_runs_is_refused(node: Node, monkeypatch: pytest.MonkeyPatch) -> None:
    gate = Gate(monkeypatch)
    node.apply_to(10)
    with pytest.raises(DumpStarted):
        node.fsm.serialize(node.dump + ".tmp", meta_at(10))
    with pytest.raises(RuntimeError, match="already running"):
        node.fsm.serialize(node.dump + ".tmp", meta_at(10))
    gate.release.set()
    assert node.wait_for_outcome() == SERIALIZER_STATE.SUCCESS


# the default writer: a process of its own


@pytest.fixture
def process_node(tmp_path: Path) -> Iterator[Node]:
    n = Node(tmp_path / "n1", write_in_process)
    yield n
    n.close()


def test_a_writer_process_dumps_the_state_at_the_call_while_applies_go_on(process_node: Node) -> None:
    node = process_node
    node.apply_to(40, messages=50)
    frozen = dict(node.kv.scan(b"", b"\xff"))
    node.serializer.serialize((None, *meta_at(40)), 39)
    node.apply_to(60, messages=50)
    assert node.machine.lock.acquire(timeout=1.0), "a read could not take the state machine's lock"
    node.machine.lock.release()
    assert node.wait_for_outcome() == SERIALIZER_STATE.SUCCESS
    applied, meta = read_verified(node.dump)
    assert applied == 40 and meta == meta_at(40)
    restored = RocksKV(str(node.root / "restored"))
    try:
        snapshot.restore(restored, node.dump)
        assert dict(restored.scan(b"", b"\xff")) == frozen
    finally:
        restored.close()
    assert not os.path.exists(node.checkpoint) and not os.path.exists(node.dump + ".partial")


def test_a_failing_writer_process_is_a_failed_dump_and_leaves_the_old_snapshot(
    process_node: Node, monkeypatch: pytest.MonkeyPatch
) -> None:
    node = process_node
    node.apply_to(10)
    node.serializer.serialize((None, *meta_at(10)), 9)
    assert node.wait_for_outcome() == SERIALIZER_STATE.SUCCESS
    before = Path(node.dump).read_bytes()
    node.apply_to(20)
    monkeypatch.setattr("sys.executable", "/bin/false")  # a writer that exits with 1
    node.serializer.serialize((None, *meta_at(20)), 19)
    assert node.wait_for_outcome() == SERIALIZER_STATE.FAILED
    assert Path(node.dump).read_bytes() == before
    assert not os.path.exists(node.checkpoint) and not os.path.exists(node.dump + ".partial")


def test_the_writer_process_stops_once_its_parent_is_gone(
    node: Node, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A node killed mid-dump must leave no writer behind (it checks its parent after every chunk)."""
    node.apply_to(30, messages=200)
    source = node.machine.frozen_copy(node.checkpoint)
    monkeypatch.setattr(snapshot, "WRITE_CHUNK", 4096)
    monkeypatch.setattr("sys.stdin", type("In", (), {"buffer": io.BytesIO(b"meta")})())
    out = str(node.root / "out.partial")
    try:
        not_my_parent = str(os.getppid() + 1)
        assert dump_writer.main([node.checkpoint, out, not_my_parent]) == dump_writer.EXIT_PARENT_GONE
        assert os.path.getsize(out) < 4096 * 3
        assert dump_writer.main([node.checkpoint, out, str(os.getppid())]) == 0
        assert int(capsys.readouterr().out) == snapshot.verify(out) == len(list(source.scan(b"", b"\xff")))
    finally:
        source.close()
