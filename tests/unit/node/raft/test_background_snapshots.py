"""BackgroundSnapshots behind fsm.QueueFSM's serializer and checker: the dump is written off the tick thread from a
frozen copy (by the writer process, or on the dump thread itself where a test holds the dump), and pysyncobj's own
Serializer (the object SyncObj drives) sees SERIALIZING, then SUCCESS once, the dump renamed into place by the
checker on the tick thread; or FAILED, when pysyncobj installed a snapshot at or beyond the dump's index meanwhile
(run under pysyncobj's own SyncObj, ticked by the test)."""

from __future__ import annotations

import contextlib
import io
import os
import pickle
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pysyncobj.syncobj
import pytest
from pysyncobj import SyncObj, replicated
from pysyncobj.config import SERIALIZER_STATE
from pysyncobj.node import TCPNode
from pysyncobj.transport import Transport

from raft_queue.node.raft import background_snapshots, dump_writer
from raft_queue.node.raft.background_snapshots import BackgroundSnapshots, DumpStarted, Writer, write_in_process
from raft_queue.node.raft.fsm import QueueFSM, read_verified, snapshot_last_index
from raft_queue.node.raft.journal import DurableJournal
from state_machine import snapshot
from state_machine.commands import Command, CreateQueue, Enqueue, Entry, NewMessage, encode_entry
from state_machine.config import QueueConfig
from state_machine.kv import FrozenKV, ReadKV
from state_machine.machine import QueueStateMachine
from state_machine.rocks import RocksKV
from tests.unit.node.raft.support import closed_at_teardown, spy
from tests.unit.node.raft.test_fsm import manual_conf, meta_at, pysyncobj_serializer, wait_for_outcome

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
        self._closed = False

    def apply_to(self, last: int, messages: int = 1) -> None:
        for index in range(self.machine.applied_index + 1, last + 1):
            self.machine.apply(index, entry(index, messages))

    def wait_for_outcome(self) -> int:
        return wait_for_outcome(self.serializer)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
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


# -- under pysyncobj's own SyncObj: a snapshot received while this node's dump is written ----------------------

TERM = 1
CHUNK = 4096
LEADER = TCPNode("127.0.0.1:7001")


def raft_entry(index: int) -> tuple[bytes, int, int]:
    """The journal entry at ``index`` as pysyncobj stores it: index 1 is its own NO_OP (term 0), then the queue's
    entries as ``QueueReplica.propose`` makes them (command type 0, pickled ``(method id 0, (data,))``)."""
    if index == 1:
        return b"\x01", 1, 0
    op: Command = CreateQueue("q", QueueConfig()) if index == 2 else Enqueue("q", [NewMessage(f"m{index}", b"x" * 64)])
    data = encode_entry(Entry(NOW_MS, [op]))
    return b"\x00" + pickle.dumps((0, (data,)), protocol=pickle.HIGHEST_PROTOCOL), index, TERM


class Outbox(Transport):  # type: ignore[misc]  # pysyncobj is untyped
    """No sockets: what the replica sends is kept."""

    def __init__(self) -> None:
        super().__init__(None, None, [])
        self.sent: list[dict[str, Any]] = []

    def send(self, node: Any, message: dict[str, Any]) -> bool:
        self.sent.append(message)
        return True


class Replica(SyncObj):  # type: ignore[misc]
    """pysyncobj's SyncObj over a ``Node``'s journal, FSM and dump, hooked up as ``QueueReplica`` and ``raft_conf``
    hook them up, but without a tick thread of its own: whichever thread calls ``tick`` is its tick thread.
    ``receive`` hands it a message from the leader; ``outbox.sent`` holds its answers; ``reported`` holds each
    SUCCESS or FAILED the checker gave pysyncobj, with the name of the thread that asked."""

    def __init__(self, node: Node, monkeypatch: pytest.MonkeyPatch) -> None:
        self.node = node
        self.outbox = Outbox()
        self.reported: list[tuple[int, str]] = []
        monkeypatch.setattr(pysyncobj.syncobj, "createJournal", lambda path: node.journal)
        conf = manual_conf(
            node.journal,
            node.dump,
            node.fsm,
            serializeChecker=self._check,
            logCompactionSplit=False,
            dynamicMembershipChange=False,
        )
        super().__init__(None, [], conf, transport=self.outbox)

    @replicated  # type: ignore[untyped-decorator]
    def apply_entry(self, data: bytes) -> Any:
        return self.node.fsm.apply(self.raftLastApplied + 1, data)

    def _check(self) -> int:
        state = self.node.fsm.check()
        if state in (SERIALIZER_STATE.SUCCESS, SERIALIZER_STATE.FAILED):
            self.reported.append((state, threading.current_thread().name))
        return state

    def tick(self) -> None:
        self.doTick(0.005)  # waits up to 5 ms for its (absent) sockets

    def tick_until(self, done: Callable[[], bool], what: str) -> None:
        deadline = time.monotonic() + DEADLINE_S
        while not done():
            assert time.monotonic() < deadline, f"never happened: {what}"
            self.tick()

    def receive(self, message: dict[str, Any]) -> None:
        self.outbox._onMessageReceived(LEADER, message)

    def append(self, first: int, last: int) -> None:
        """The leader's append_entries of ``first..last``, all committed; answered once they are in the journal."""
        prev = raft_entry(first - 1)
        entries = [raft_entry(i) for i in range(first, last + 1)]
        self.receive(
            {"type": "append_entries", "term": TERM, "commit_index": last, "entries": entries}
            | {"prevLogIdx": prev[1], "prevLogTerm": prev[2]}
        )
        ack = {"type": "next_node_idx", "next_node_idx": last + 1, "reset": False, "success": True}
        assert self.outbox.sent[-1] == ack

    def install(self, dump: str, commit_index: int) -> None:
        """The leader streams its dump file in chunks of (data, is first, is last), the last one empty, as
        pysyncobj's ``Serializer.getTransmissionData`` cuts it; the last chunk installs it."""
        raw = Path(dump).read_bytes()
        pieces = [raw[pos : pos + CHUNK] for pos in range(0, len(raw), CHUNK)] + [b""]
        for i, piece in enumerate(pieces):
            chunk = (piece, i == 0, i == len(pieces) - 1)
            self.receive({"type": "append_entries", "term": TERM, "commit_index": commit_index, "serialized": chunk})

    def dump_to_the_end(self) -> None:
        """pysyncobj's own compaction: the dump of the last applied entry, ticked until the checker reports it."""
        self.forceLogCompaction()
        reported = len(self.reported)
        self.tick_until(lambda: len(self.reported) > reported, "the dump finished")


def journal_indexes(journal: DurableJournal) -> list[int]:
    return [e[1] for e in journal[:]]


@pytest.fixture
def make_node(tmp_path: Path) -> Iterator[Callable[[str], Node]]:
    yield from closed_at_teardown(tmp_path, Node)


def test_a_snapshot_installed_while_the_own_dump_is_written_survives_it_and_a_restart(
    make_node: Callable[[str], Node], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A follower starts its dump at M; before it is written, the leader streams it a snapshot at N > M, which
    pysyncobj installs (journal cleared to [N-1, N]); the follower then acknowledges N+1..L. When its dump at M
    finished, it used to be renamed over the installed dump, and the next start (pysyncobj finds the journal does
    not start at M-1, M) cleared the journal: the acknowledged entries N+1..L were gone from this node's disk."""
    m, n, last = 20, 30, 40
    leader = make_node("leader")
    leader_raft = Replica(leader, monkeypatch)
    leader_raft.append(2, n)
    leader_raft.tick()  # applies 2..N
    leader_raft.dump_to_the_end()
    assert leader_raft.reported == [(SERIALIZER_STATE.SUCCESS, "MainThread")] and snapshot_last_index(leader.dump) == n

    gate = Gate(monkeypatch)
    follower = make_node("follower")
    raft = Replica(follower, monkeypatch)
    raft.append(2, m)
    raft.tick()
    assert follower.machine.applied_index == m
    raft.forceLogCompaction()
    raft.tick()  # the dump at M starts
    assert gate.writing.wait(DEADLINE_S)

    raft.install(leader.dump, commit_index=n)
    assert follower.machine.applied_index == n and journal_indexes(follower.journal) == [n - 1, n]
    assert raft.outbox.sent[-1]["success"] is True
    raft.append(n + 1, last)  # acknowledged: durable on this follower, counted for a commit
    raft.tick()
    assert follower.machine.applied_index == last

    gate.release.set()  # the dump at M finishes now
    raft.tick_until(lambda: bool(raft.reported), "the dump at M reported")
    follower.snapshots.join(DEADLINE_S)
    raft.tick()

    # A restart of the journal/FSM pair: pysyncobj loads the dump on its first tick (__loadDumpFile).
    raft.destroy()
    follower.close()
    restarted = Node(follower.root)
    try:
        Replica(restarted, monkeypatch).tick()
        after = (snapshot_last_index(restarted.dump), journal_indexes(restarted.journal))
    finally:
        restarted.close()
    assert after == (n, list(range(n - 1, last + 1))), "dump index, journal after a restart"
    # The dump at M was discarded on the tick thread and reported as failed: pysyncobj trimmed nothing for it.
    assert raft.reported == [(SERIALIZER_STATE.FAILED, "MainThread")]
    assert not os.path.exists(follower.dump + ".partial") and follower.snapshots.dumps_written == 0


def test_a_written_dump_is_renamed_by_the_checker_on_the_tick_thread_and_reported_once(
    node: Node, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The normal path: the dump thread writes the partial and renames nothing; the first tick that asks the checker
    renames it over the dump file and fsyncs the directory, then reports SUCCESS once, and pysyncobj trims. The
    dump it replaced is freed off the tick thread (its last close frees its blocks)."""
    first, m = 10, 20
    raft = Replica(node, monkeypatch)
    raft.append(2, first)
    raft.tick()
    raft.dump_to_the_end()  # an earlier dump, which the one below replaces
    assert raft.reported == [(SERIALIZER_STATE.SUCCESS, "MainThread")] and snapshot_last_index(node.dump) == first
    replaced = os.stat(node.dump).st_ino

    renames, events, freed = _watch_the_dump_file(monkeypatch, node.dump, replaced)

    raft.reported.clear()
    raft.append(first + 1, m)
    raft.tick()
    raft.forceLogCompaction()
    raft.tick()  # the dump at M starts
    node.snapshots.join(DEADLINE_S)  # ... and is written, by the snapshot-dump thread, which renamed nothing
    assert os.path.exists(node.dump + ".partial") and snapshot_last_index(node.dump) == first
    assert renames == [] and raft.reported == []

    _tick_on_a_thread_until_reported(raft, freed)
    assert raft.reported == [(SERIALIZER_STATE.SUCCESS, "raft-tick")]
    assert renames == [(node.dump + ".partial", node.dump, "raft-tick")]
    assert events == ["fsync dir (1 renames)"]  # renamed, then the directory fsynced, then SUCCESS
    assert freed == ["snapshot-free"]
    assert snapshot_last_index(node.dump) == m and node.snapshots.dumps_written == 2
    assert journal_indexes(node.journal)[:2] == [m - 1, m]  # SUCCESS: pysyncobj trimmed the journal to the dump
    raft.destroy()


def _watch_the_dump_file(
    monkeypatch: pytest.MonkeyPatch, dump: str, replaced: int
) -> tuple[list[tuple[str, str, str]], list[str], list[str]]:
    """Records renames over ``dump`` (with the thread), directory fsyncs (with the renames seen so far), and the
    thread whose close freed the inode ``replaced``."""
    renames: list[tuple[str, str, str]] = []
    events: list[str] = []
    freed: list[str] = []

    def note_rename(src: str, dst: str) -> None:
        if dst == dump:  # the journal renames its own files too
            renames.append((src, dst, threading.current_thread().name))

    def note_close(fd: int) -> None:
        with contextlib.suppress(OSError):
            st = os.fstat(fd)
            if st.st_ino == replaced and st.st_nlink == 0:  # once freed, a new file may get the inode number
                freed.append(threading.current_thread().name)

    spy(monkeypatch, os, "replace", note_rename)
    spy(
        monkeypatch,
        background_snapshots,
        "_fsync_dir",
        lambda path: events.append(f"fsync dir ({len(renames)} renames)"),
    )
    spy(monkeypatch, os, "close", note_close)
    return renames, events, freed


def _tick_on_a_thread_until_reported(raft: Replica, freed: list[str]) -> None:
    """Ticks ``raft`` on a thread named ``raft-tick`` until the checker reported, 20 more ticks passed (the outcome
    is reported once, however often it is asked) and the replaced dump was freed."""
    ticks = 0
    stop = threading.Event()

    def tick_thread() -> None:
        nonlocal ticks
        while not stop.is_set():
            raft.tick()
            ticks += 1

    ticker = threading.Thread(target=tick_thread, name="raft-tick")
    ticker.start()
    try:
        deadline = time.monotonic() + DEADLINE_S
        while not raft.reported:
            assert time.monotonic() < deadline, "the checker never reported the dump"
            time.sleep(0.005)
        reported_at = ticks
        while ticks < reported_at + 20 or not freed:
            assert time.monotonic() < deadline, "the tick thread stopped ticking, or the old dump was never closed"
            time.sleep(0.005)
    finally:
        stop.set()
        ticker.join(DEADLINE_S)


@pytest.mark.parametrize(
    ("installed_at", "outcome"),
    [(15, SERIALIZER_STATE.SUCCESS), (20, SERIALIZER_STATE.FAILED), (25, SERIALIZER_STATE.FAILED)],
)
def test_the_checker_discards_a_dump_only_when_a_snapshot_at_or_beyond_its_index_was_installed(
    make_node: Callable[[str], Node], monkeypatch: pytest.MonkeyPatch, installed_at: int, outcome: int
) -> None:
    """Indexes decide, not timing: an older snapshot installed meanwhile leaves the dump (at 20) to be renamed."""
    other = make_node("other")
    other.apply_to(installed_at)
    other.serializer.serialize((None, *meta_at(installed_at)), installed_at - 1)
    assert other.wait_for_outcome() == SERIALIZER_STATE.SUCCESS
    received = Path(other.dump).read_bytes()

    node = make_node("n1")
    gate = Gate(monkeypatch)
    node.apply_to(20)
    node.serializer.serialize((None, *meta_at(20)), 19)
    assert gate.writing.wait(DEADLINE_S)
    Path(node.dump).write_bytes(received)  # what pysyncobj's rename of the received file leaves
    node.fsm.deserialize(node.dump)
    gate.release.set()
    assert node.wait_for_outcome() == outcome
    assert node.serializer.checkSerializing()[0] == SERIALIZER_STATE.NOT_SERIALIZING
    assert snapshot_last_index(node.dump) == max(installed_at, 20)
    assert (Path(node.dump).read_bytes() == received) is (outcome == SERIALIZER_STATE.FAILED)
    assert not os.path.exists(node.dump + ".partial") and not os.path.exists(node.checkpoint)
