"""fsm.QueueFSM's snapshot hooks over a real QueueStateMachine (RocksKV) and a real DurableJournal, driven by
pysyncobj's own Serializer the way SyncObj drives it, including the crash window between the rename of a new dump
and the trim of the journal.

pysyncobj calls ``serializer(tmp, (last, prev, cluster))`` and then, because it raises ``DumpStarted``, asks the
checker until the dump (written by the dump writer process) is renamed into place; then it trims the journal so
that it starts at ``prev``. On load it uses ``(None,) + deserializer(path)`` as ``data`` and clears the journal
unless ``journal[0] == data[2]`` (prev) and ``journal[1] == data[1]`` (last).
"""

from __future__ import annotations

import os
import pickle
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pysyncobj.syncobj
import pytest
from pysyncobj import SyncObj, SyncObjConf
from pysyncobj.config import SERIALIZER_STATE
from pysyncobj.node import TCPNode
from pysyncobj.serializer import Serializer

from raft_queue.node.raft import fsm
from raft_queue.node.raft.background_snapshots import BackgroundSnapshots
from raft_queue.node.raft.fsm import EXIT_CORRUPT_SNAPSHOT, QueueFSM, _align_journal, snapshot_last_index
from raft_queue.node.raft.journal import DurableJournal
from state_machine import keys, snapshot
from state_machine.commands import Command, CreateQueue, Enqueue, Entry, NewMessage, encode_entry
from state_machine.config import QueueConfig
from state_machine.kv import WriteSet
from state_machine.machine import QueueStateMachine
from state_machine.rocks import RocksKV
from tests.unit.node.raft.support import Exited, closed_at_teardown, fake_exit, spy

JournalEntry = tuple[bytes, int, int]
CLUSTER = frozenset({TCPNode("127.0.0.1:7001"), TCPNode("127.0.0.1:7002"), TCPNode("127.0.0.1:7003")})
DUMP_AT = 30
DEADLINE_S = 30.0


def term_of(index: int) -> int:
    return 1 if index <= 20 else 2


def op_for(index: int) -> Command:
    if index == 1:
        return CreateQueue("q", QueueConfig())
    return Enqueue("q", [NewMessage(f"m{index}", f"body {index}".encode())])


def data_for(index: int) -> bytes:
    return encode_entry(Entry(now_ms=1_000 + index, ops=[op_for(index)]))


def entry(index: int, term: int | None = None) -> JournalEntry:
    """The journal entry pysyncobj stores for index: command type byte + pickled (method id, args)."""
    command = b"\x00" + pickle.dumps((0, (data_for(index),)), protocol=pickle.HIGHEST_PROTOCOL)
    return command, index, term_of(index) if term is None else term


def meta_at(last: int) -> tuple[JournalEntry, JournalEntry, frozenset[TCPNode]]:
    return entry(last), entry(last - 1), CLUSTER


def pysyncobj_serializer(hooks: QueueFSM, dump: str) -> Serializer:
    """The very object SyncObj builds from its conf, wired the way raft_conf wires the FSM."""
    return Serializer(dump, 1024 * 1024, False, hooks.serialize, hooks.deserialize, hooks.check)


def manual_conf(journal: DurableJournal, dump: str, hooks: QueueFSM, **options: Any) -> SyncObjConf:
    """A SyncObjConf over a node's journal, dump and snapshot hooks (as raft_conf wires them) for a SyncObj that
    only ticks when a test tells it to; ``options`` add to or replace any of it."""
    base = {
        "autoTick": False,
        "journalFile": journal.path,
        "fullDumpFile": dump,
        "serializer": hooks.serialize,
        "deserializer": hooks.deserialize,
        "serializeChecker": hooks.check,
    }
    return SyncObjConf(**(base | options))


def wait_for_outcome(serializer: Serializer) -> int:
    """Asks the checker, as pysyncobj does every tick, until the dump is no longer being written."""
    deadline = time.monotonic() + DEADLINE_S
    while True:
        state, _ = serializer.checkSerializing()
        if state != SERIALIZER_STATE.SERIALIZING:
            return int(state)
        assert time.monotonic() < deadline, "the background dump never finished"
        time.sleep(0.005)


class Files:
    """One node's raft directory and state store."""

    def __init__(self, root: Path) -> None:
        root.mkdir()
        self.root = root
        self.kv = RocksKV(str(root / "state"))
        self.machine = QueueStateMachine(self.kv)
        self.journal = DurableJournal(str(root / "journal"))
        self.dump = str(root / "snapshot")
        # As Node builds it: the dump is written by the dump writer process.
        dumps = BackgroundSnapshots(self.machine, self.dump, str(root / "state-checkpoint"))
        self.fsm = QueueFSM(self.machine, self.journal, lambda applied: None, dumps)
        self.serializer = pysyncobj_serializer(self.fsm, self.dump)
        self.deserialize = self.fsm.deserialize

    def apply_to(self, last: int) -> None:
        for index in range(self.machine.applied_index + 1, last + 1):
            self.machine.apply(index, data_for(index))

    def append(self, first: int, last: int, term: Callable[[int], int] = term_of) -> None:
        for index in range(first, last + 1):
            self.journal.add(*entry(index, term(index)))
        self.journal.flush()

    def write_dump(self, last: int = DUMP_AT) -> tuple[Any, ...]:
        """What pysyncobj does at compaction: serialize, then ask the checker until the dump is in place."""
        assert self.machine.applied_index == last
        meta = meta_at(last)
        self.serializer.serialize((None, *meta), last - 1)
        assert wait_for_outcome(self.serializer) == SERIALIZER_STATE.SUCCESS
        return meta

    def contents(self) -> dict[bytes, bytes]:
        return dict(self.kv.scan(b"", b"\xff"))

    def journal_indexes(self) -> list[int]:
        return [e[1] for e in self.journal[:]]

    def close(self) -> None:
        self.fsm.dumps.join(DEADLINE_S)
        self.journal._destroy()
        self.kv.close()


@pytest.fixture
def make_files(tmp_path: Path) -> Iterator[Callable[[str], Files]]:
    yield from closed_at_teardown(tmp_path, Files)


@pytest.fixture
def leader(make_files: Callable[[str], Files]) -> Files:
    """A node that applied 1..30 and wrote its dump at 30."""
    files = make_files("leader")
    files.apply_to(DUMP_AT)
    files.write_dump()
    return files


def copy_dump(source: Files, target: Files) -> None:
    Path(target.dump).write_bytes(Path(source.dump).read_bytes())


def spy_restore(files: Files, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    calls: list[str] = []
    spy(monkeypatch, files.machine, "restore", calls.append)
    return calls


# -- round trip -------------------------------------------------------------------------------------------------


def test_serialize_writes_a_verified_dump_with_pysyncobjs_meta(leader: Files) -> None:
    assert snapshot.verify(leader.dump) == len(leader.contents())
    applied, raw = snapshot.read_header(leader.dump)
    assert applied == DUMP_AT
    assert pickle.loads(raw) == meta_at(DUMP_AT)
    assert snapshot_last_index(leader.dump) == DUMP_AT


def test_round_trip_restores_an_empty_store_and_returns_the_meta_unchanged(
    leader: Files, make_files: Callable[[str], Files]
) -> None:
    follower = make_files("follower")
    copy_dump(leader, follower)
    meta = follower.deserialize(follower.dump)
    assert meta == meta_at(DUMP_AT) and type(meta) is tuple
    data = (None, *meta)  # what pysyncobj's Serializer.deserialize hands to __loadDumpFile
    assert data[1] == entry(DUMP_AT) and data[2] == entry(DUMP_AT - 1) and data[3] == CLUSTER
    assert follower.machine.applied_index == DUMP_AT
    assert not follower.machine.restoring
    assert follower.contents() == leader.contents()
    assert follower.machine.list_queues() == leader.machine.list_queues()
    # Both continue identically from there.
    assert follower.machine.apply(31, data_for(31)) == leader.machine.apply(31, data_for(31))


@pytest.mark.parametrize(
    "case",
    [
        # (local applied index, store marked restoring, expect a restore)
        (0, False, True),
        (10, False, True),
        (DUMP_AT - 1, False, True),
        (DUMP_AT, False, False),  # a restart: the store already holds the dump's state
        (DUMP_AT + 10, False, False),  # a restart: the store is ahead; never roll it back
        (DUMP_AT + 10, True, True),  # a previous restore was interrupted: the store is incomplete
    ],
)
def test_restores_only_when_the_snapshot_is_ahead_or_the_store_is_restoring(
    leader: Files, make_files: Callable[[str], Files], monkeypatch: pytest.MonkeyPatch, case: tuple[int, bool, bool]
) -> None:
    local_applied, restoring, restored = case
    node = make_files("node")
    node.apply_to(local_applied)
    if restoring:
        node.kv.commit(WriteSet(writes={keys.RESTORING: b""}), sync=True)
    assert node.machine.restoring is restoring
    copy_dump(leader, node)
    calls = spy_restore(node, monkeypatch)

    assert node.deserialize(node.dump) == meta_at(DUMP_AT)
    assert calls == ([node.dump] if restored else [])
    assert node.machine.applied_index == (DUMP_AT if restored else local_applied)
    assert not node.machine.restoring
    if restored:
        assert node.contents() == leader.contents()


def test_a_received_snapshot_is_fsynced_with_its_directory_before_it_is_trusted(
    leader: Files, make_files: Callable[[str], Files], monkeypatch: pytest.MonkeyPatch
) -> None:
    node = make_files("node")
    copy_dump(leader, node)
    events: list[str] = []
    spy(monkeypatch, fsm, "fsync_path", lambda path: events.append(f"fsync {path}"))
    spy(monkeypatch, node.machine, "restore", lambda path: events.append("restore"))
    node.deserialize(node.dump)
    assert events == [f"fsync {node.dump}", f"fsync {node.root}", "restore"]


def test_snapshot_last_index_of_a_missing_file_is_zero(tmp_path: Path) -> None:
    assert snapshot_last_index(str(tmp_path / "no-such-snapshot")) == 0


# -- the crash window: dump renamed, journal not yet trimmed ----------------------------------------------------


@pytest.mark.parametrize("applied_before_crash", [DUMP_AT, 45])
def test_crash_after_the_dump_rename_keeps_every_entry_after_the_dump(
    make_files: Callable[[str], Files], applied_before_crash: int
) -> None:
    node = make_files("node")
    node.append(1, 50)
    node.apply_to(DUMP_AT)
    meta = node.write_dump()
    node.apply_to(applied_before_crash)
    # Crash here: pysyncobj never reached __deleteEntriesTo. On restart it loads the dump:
    data = (None, *node.deserialize(node.dump))
    assert data[1:] == meta

    assert node.journal_indexes() == list(range(DUMP_AT - 1, 51))
    assert node.journal[0] == entry(DUMP_AT - 1) and node.journal[1] == entry(DUMP_AT)
    # pysyncobj's own test in __loadDumpFile now finds the shape it expects and does not clear the journal.
    assert not (len(node.journal) < 2 or node.journal[0] != data[2] or node.journal[1] != data[1])
    # The trim is durable.
    on_disk = DurableJournal.scan(node.journal.path)
    assert (on_disk.first_index, on_disk.last_index, on_disk.entries) == (DUMP_AT - 1, 50, 50 - DUMP_AT + 2)
    assert node.machine.applied_index == applied_before_crash  # no rollback either


class _Unaligned:
    """A deserializer that only reads the meta, as if raft-queue did not align the journal (stock behaviour)."""

    def __call__(self, path: str) -> Any:
        return pickle.loads(snapshot.read_header(path)[1])


@pytest.mark.parametrize("aligned", [True, False])
def test_pysyncobjs_load_dump_file_keeps_the_tail_only_with_the_alignment(
    make_files: Callable[[str], Files], monkeypatch: pytest.MonkeyPatch, aligned: bool
) -> None:
    """Runs pysyncobj's real __loadDumpFile on our journal (a read-only SyncObj: no socket, no tick thread)."""
    node = make_files("node")
    node.append(1, 50)
    node.apply_to(DUMP_AT)
    node.write_dump()
    monkeypatch.setattr(pysyncobj.syncobj, "createJournal", lambda path: node.journal)
    conf = manual_conf(node.journal, node.dump, node.fsm, deserializer=node.deserialize if aligned else _Unaligned())
    obj = SyncObj(None, [], conf)
    try:
        obj._SyncObj__loadDumpFile(clearJournal=False)
        assert obj.raftLastApplied == DUMP_AT
        if aligned:
            assert node.journal_indexes() == list(range(DUMP_AT - 1, 51))
        else:  # the reproduced pysyncobj crash window: the acknowledged entries 31..50 are gone
            assert node.journal_indexes() == [DUMP_AT - 1, DUMP_AT]
    finally:
        obj.destroy()


# -- _align_journal leaves every other journal alone -----------------------------------------------------------


def _same_terms(index: int) -> int:
    return term_of(index)


def _other_terms(index: int) -> int:
    return 1  # a log that diverged: index 29 and 30 carry term 1 here, term 2 in the dump


@pytest.mark.parametrize(
    ("first", "last", "terms", "expected_first"),
    [
        (1, 50, _same_terms, DUMP_AT - 1),  # holds prev and last: trimmed
        (1, DUMP_AT, _same_terms, DUMP_AT - 1),  # ends exactly at last: trimmed to [prev, last]
        (DUMP_AT - 1, 50, _same_terms, DUMP_AT - 1),  # already aligned
        (1, DUMP_AT - 1, _same_terms, 1),  # does not hold last: pysyncobj will reset it to the dump
        (DUMP_AT + 1, 50, _same_terms, DUMP_AT + 1),  # starts after prev
        (DUMP_AT, 50, _same_terms, DUMP_AT),  # starts at last, not at prev
        (1, 50, _other_terms, 1),  # other entries at those indexes: not ours to keep
        (DUMP_AT - 1, DUMP_AT - 1, _same_terms, DUMP_AT - 1),  # a single entry
        (1, 0, _same_terms, None),  # empty
    ],
)
def test_align_journal_trims_only_when_the_journal_holds_the_dumps_entries(
    make_files: Callable[[str], Files], first: int, last: int, terms: Callable[[int], int], expected_first: int | None
) -> None:
    node = make_files("node")
    node.append(first, last, terms)
    before = node.journal[:]
    syncs = node.journal.syncs
    _align_journal(node.journal, entry(DUMP_AT), entry(DUMP_AT - 1))
    after = node.journal[:]
    assert (after[0][1] if after else None) == expected_first
    assert after == [e for e in before if expected_first is not None and e[1] >= expected_first]
    if expected_first is None or expected_first == first:
        assert node.journal.syncs == syncs, "an untouched journal must not be rewritten"
    else:
        assert after[:2] == [entry(DUMP_AT - 1), entry(DUMP_AT)]


# -- a damaged snapshot stops the node --------------------------------------------------------------------------


def _flip(path: str, offset: int, mask: int = 0x01) -> None:
    raw = bytearray(Path(path).read_bytes())
    raw[offset] ^= mask
    Path(path).write_bytes(bytes(raw))


def _meta_offset(path: str) -> int:
    raw = Path(path).read_bytes()
    meta = pickle.dumps(meta_at(DUMP_AT), protocol=pickle.HIGHEST_PROTOCOL)
    assert raw.count(meta) == 1
    return raw.index(meta)


def _damage_body(path: str) -> None:
    _flip(path, os.path.getsize(path) - 60)  # inside the last key/value record


def _truncate(path: str) -> None:
    os.truncate(path, os.path.getsize(path) - 100)


def _garbage(path: str) -> None:
    Path(path).write_bytes(b"this is not a snapshot" * 10)


def _empty(path: str) -> None:
    Path(path).write_bytes(b"")


@pytest.mark.parametrize(
    "damage",
    [_garbage, _empty, _truncate, _damage_body],
    ids=["garbage", "empty", "truncated", "damaged-body"],
)
def test_a_damaged_snapshot_that_must_be_loaded_stops_the_node_with_78(
    leader: Files, make_files: Callable[[str], Files], monkeypatch: pytest.MonkeyPatch, damage: Callable[[str], None]
) -> None:
    node = make_files("node")
    node.apply_to(5)
    copy_dump(leader, node)
    damage(node.dump)
    monkeypatch.setattr(os, "_exit", fake_exit)
    with pytest.raises(Exited) as exited:
        node.deserialize(node.dump)
    assert exited.value.code == EXIT_CORRUPT_SNAPSHOT == 78
    # Verified before anything was touched: the store is as it was.
    assert node.machine.applied_index == 5 and not node.machine.restoring


def test_a_damaged_snapshot_body_stops_the_node_even_when_the_store_is_ahead(
    leader: Files, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Regression: the body is only verified when a restore is needed. A restarted node whose store is at or past the
    dump keeps serving the damaged file: pysyncobj streams fullDumpFile as-is to every lagging follower."""
    _damage_body(leader.dump)
    monkeypatch.setattr(os, "_exit", fake_exit)
    with pytest.raises(Exited) as exited:
        leader.deserialize(leader.dump)
    assert exited.value.code == EXIT_CORRUPT_SNAPSHOT


def test_a_flipped_bit_in_the_snapshot_meta_stops_the_node(
    make_files: Callable[[str], Files], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Regression: the meta is trusted without the file's SHA-256. One bit turns the dump's last index 30 into 31:
    deserialize returns it, pysyncobj sets raftLastApplied=31 (entry 31 is never applied here) and, as the
    journal no longer matches, clears it (entries 31..50 are lost)."""
    node = make_files("node")
    node.append(1, 50)
    node.apply_to(DUMP_AT)
    node.write_dump()
    start = _meta_offset(node.dump)
    raw = Path(node.dump).read_bytes()
    # pickle opcodes of the last entry's (index, term) and the tuple: BININT1 30, BININT1 2, TUPLE3
    last_index_opcodes = b"K" + bytes([DUMP_AT]) + b"K" + bytes([term_of(DUMP_AT)]) + b"\x87"
    assert raw.count(last_index_opcodes) == 1 and raw.index(last_index_opcodes) > start
    _flip(node.dump, raw.index(last_index_opcodes) + 1)  # 30 -> 31
    monkeypatch.setattr(os, "_exit", fake_exit)
    with pytest.raises(Exited) as exited:
        returned = node.deserialize(node.dump)
        pytest.fail(f"deserialize returned the damaged meta: last={returned[0][1:]}, prev={returned[1][1:]}")
    assert exited.value.code == EXIT_CORRUPT_SNAPSHOT


def test_meta_that_does_not_unpickle_stops_the_node(leader: Files, monkeypatch: pytest.MonkeyPatch) -> None:
    """Regression: a bit flip in a pickled string raises UnicodeDecodeError, which deserialize does not catch;
    pysyncobj's __loadDumpFile swallows it ('failed to load full dump') and the node carries on."""
    raw = Path(leader.dump).read_bytes()
    address = b"127.0.0.1:7001"
    offset = raw.index(address, _meta_offset(leader.dump))
    _flip(leader.dump, offset, 0x80)  # '1' (0x31) -> 0xb1: not UTF-8
    monkeypatch.setattr(os, "_exit", fake_exit)
    with pytest.raises(Exited) as exited:
        leader.deserialize(leader.dump)
    assert exited.value.code == EXIT_CORRUPT_SNAPSHOT


def test_snapshot_last_index_reports_damaged_meta_as_snapshot_corrupt(leader: Files) -> None:
    """Regression: Node._check_consistency turns SnapshotCorrupt into a clean StartupRefused; a pickled string with a
    flipped bit escapes as UnicodeDecodeError instead (the node dies with a traceback, RocksDB left open)."""
    raw = Path(leader.dump).read_bytes()
    _flip(leader.dump, raw.index(b"127.0.0.1:7001", _meta_offset(leader.dump)), 0x80)
    with pytest.raises(snapshot.SnapshotCorrupt):
        snapshot_last_index(leader.dump)
