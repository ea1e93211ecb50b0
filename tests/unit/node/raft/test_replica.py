"""QueueReplica as a single-node cluster driven by hand (autoTick=False): no tick thread, no peers, no traffic.

Checks the adapter's promises that need a real SyncObj: the journal is durable before an entry is applied and
answered (a single node sends nothing, so FlushingTransport never flushes for it), the one replicated method and
its compact pickling, and the fail-stop exits of apply_entry.
"""

from __future__ import annotations

import os
import pickle
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from pysyncobj import FAIL_REASON, SyncObjConf

from raft_queue.node.raft.background_snapshots import BackgroundSnapshots
from raft_queue.node.raft.fsm import EXIT_APPLY_FAILED, EXIT_NEWER_LOG, QueueFSM
from raft_queue.node.raft.journal import DurableJournal
from raft_queue.node.raft.replica import QueueReplica
from state_machine.commands import CODEC_VERSION, CreateQueue, Enqueue, Entry, NewMessage, encode_entry
from state_machine.config import QueueConfig
from state_machine.contract import NoLeader
from state_machine.machine import AppliedEntry, QueueStateMachine
from state_machine.results import QueueCreated
from state_machine.rocks import RocksKV
from tests.unit.node.raft.support import Exited, fake_exit

DEADLINE_S = 5.0


def fsm_for(
    tmp_path: Path, machine: QueueStateMachine, journal: DurableJournal, applied: list[AppliedEntry]
) -> QueueFSM:
    """The FSM the way Node builds it (the dump written by the writer process)."""
    dumps = BackgroundSnapshots(machine, str(tmp_path / "snapshot"), str(tmp_path / "state-checkpoint"))
    return QueueFSM(machine, journal, applied.append, dumps)


def free_address() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{s.getsockname()[1]}"


@dataclass
class Single:
    replica: Any
    journal: DurableJournal
    machine: QueueStateMachine
    applied: list[AppliedEntry] = field(default_factory=list)
    #: (result, reason, journal dirty, journal last index) as seen by each callback
    answers: list[tuple[Any, int, bool, int]] = field(default_factory=list)

    def tick_until(self, condition: Callable[[], bool], what: str) -> None:
        deadline = time.monotonic() + DEADLINE_S
        while not condition():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}")
            self.replica.doTick(0.001)

    def become_leader(self) -> None:
        self.tick_until(lambda: bool(self.replica._isLeader()), "the single node to elect itself")

    def propose(self, data: bytes) -> None:
        def callback(result: Any, reason: int) -> None:
            self.answers.append((result, reason, self.journal.dirty, self.journal.last_index))

        self.replica.propose(data, callback)


@contextmanager
def hand_ticked_replica(
    tmp_path: Path, partners: list[str], **timing: float
) -> Iterator[tuple[Any, DurableJournal, QueueStateMachine, list[AppliedEntry]]]:
    """A QueueReplica with autoTick=False (ticked by the test) on a real journal and store; ``timing`` overrides
    the SyncObjConf timeouts. Destroyed, and the store closed, on the way out."""
    kv = RocksKV(str(tmp_path / "state"))
    machine = QueueStateMachine(kv)
    journal = DurableJournal(str(tmp_path / "journal"))
    applied: list[AppliedEntry] = []
    fsm = fsm_for(tmp_path, machine, journal, applied)
    conf = SyncObjConf(
        autoTick=False,
        appendEntriesUseBatch=False,
        commandsWaitLeader=False,
        journalFile=journal.path,
        fullDumpFile=str(tmp_path / "snapshot"),
        serializer=fsm.serialize,
        deserializer=fsm.deserialize,
        serializeChecker=fsm.check,
        **({"appendEntriesPeriod": 0.005, "raftMinTimeout": 0.02, "raftMaxTimeout": 0.04} | timing),
    )
    replica = QueueReplica(free_address(), partners, conf=conf, journal=journal, fsm=fsm)
    try:
        yield replica, journal, machine, applied
    finally:
        replica.destroy()
        kv.close()


@pytest.fixture
def single(tmp_path: Path) -> Iterator[Single]:
    with hand_ticked_replica(tmp_path, []) as (replica, journal, machine, applied):
        yield Single(replica, journal, machine, applied)


def entry_data(*ops: Any, now_ms: int = 1_000) -> bytes:
    return encode_entry(Entry(now_ms=now_ms, ops=list(ops)))


def test_propose_without_a_leader_raises_no_leader_and_proposes_nothing(single: Single) -> None:
    assert single.replica._getLeader() is None  # no tick yet: no election has run
    with pytest.raises(NoLeader):
        single.propose(entry_data(CreateQueue("q", QueueConfig())))
    last = single.journal.last_index
    single.become_leader()
    single.tick_until(lambda: single.replica.raftLastApplied >= last + 1, "the leader's no-op to apply")
    assert single.answers == [] and single.applied == []


def test_a_single_node_is_durable_before_it_applies_and_answers(single: Single) -> None:
    single.become_leader()
    single.propose(entry_data(CreateQueue("q", QueueConfig())))
    single.tick_until(lambda: bool(single.answers), "the answer")
    result, reason, dirty, last_index = single.answers[0]
    assert reason == FAIL_REASON.SUCCESS
    assert isinstance(result, AppliedEntry) and result.results == [QueueCreated(created=True)]
    assert not dirty, "answered while the journal held unflushed entries"
    assert result.index == last_index == single.replica.raftLastApplied
    on_disk = DurableJournal.scan(single.journal.path)
    assert on_disk.last_index >= result.index and on_disk.torn_bytes == 0
    assert single.applied == [result]


def test_group_of_entries_all_durable_before_any_answer(single: Single) -> None:
    single.become_leader()
    single.propose(entry_data(CreateQueue("q", QueueConfig())))
    for i in range(20):
        single.propose(entry_data(Enqueue("q", [NewMessage(f"m{i}", b"x")])))
    single.tick_until(lambda: len(single.answers) == 21, "21 answers")
    assert all(reason == FAIL_REASON.SUCCESS and not dirty for _, reason, dirty, _ in single.answers)
    indexes = [result.index for result, _, _, _ in single.answers]
    assert indexes == sorted(indexes) and len(set(indexes)) == 21


def test_exactly_one_replicated_method(single: Single) -> None:
    # Adding another @replicated method would renumber method IDs and misroute old journal entries.
    assert list(single.replica._methodToID) == ["apply_entry_v0"]


def test_entries_are_pickled_compactly(single: Single) -> None:
    single.become_leader()
    data = entry_data(Enqueue("q", [NewMessage("m", os.urandom(4000))]))
    single.propose(data)
    single.tick_until(lambda: bool(single.answers), "the answer")
    command = single.journal[-1][0]
    assert command[:1] == b"\x00"  # pysyncobj's REGULAR command type
    assert command[1:3] == b"\x80\x05"  # pickle protocol 5: bytes are stored raw
    assert pickle.loads(command[1:]) == (single.replica._methodToID["apply_entry_v0"], (data,))
    assert len(command) < len(data) + 64


def test_an_entry_from_a_newer_codec_stops_the_node_with_3(single: Single, monkeypatch: pytest.MonkeyPatch) -> None:
    single.become_leader()
    monkeypatch.setattr(os, "_exit", fake_exit)
    single.propose(bytes((CODEC_VERSION + 1,)) + b"from the future")
    with pytest.raises(Exited) as exited:
        single.tick_until(lambda: False, "the exit")
    assert exited.value.code == EXIT_NEWER_LOG == 75


def test_an_apply_that_raises_stops_the_node_with_70(single: Single, monkeypatch: pytest.MonkeyPatch) -> None:
    single.become_leader()

    def broken_apply(index: int, data: bytes) -> AppliedEntry | None:
        raise OSError("the store is gone")

    monkeypatch.setattr(single.machine, "apply", broken_apply)
    monkeypatch.setattr(os, "_exit", fake_exit)
    single.propose(entry_data(CreateQueue("q", QueueConfig())))
    with pytest.raises(Exited) as exited:
        single.tick_until(lambda: False, "the exit")
    assert exited.value.code == EXIT_APPLY_FAILED == 70
    assert single.answers == []  # never answered


def test_a_snapshot_chunk_never_commits_a_divergent_tail(tmp_path: Path) -> None:
    """pysyncobj sets commit = min(leader's commit, own last index) on a snapshot chunk without touching the log:
    a follower holding entries nobody else has (a deposed leader's tail) would apply them and answer "ok"."""
    kv = RocksKV(str(tmp_path / "state"))
    machine = QueueStateMachine(kv)
    journal = DurableJournal(str(tmp_path / "journal"))
    journal.add(b"\x00", 1, 0)  # pysyncobj's initial no-op, committed (commit index 1)
    for idx in range(2, 6):  # the tail this node appended as leader of term 1, never replicated
        journal.add(pickle.dumps((0, (entry_data(CreateQueue(f"ghost{idx}", QueueConfig())),))), idx, 1)
    journal.setCurrentTerm(1, None)
    applied: list[AppliedEntry] = []
    fsm = fsm_for(tmp_path, machine, journal, applied)
    conf = SyncObjConf(
        autoTick=False,
        raftMinTimeout=5.0,  # no election of its own during the test
        raftMaxTimeout=6.0,
        connectionTimeout=6.0,
        journalFile=journal.path,
        fullDumpFile=str(tmp_path / "snapshot"),
        serializer=fsm.serialize,
        deserializer=fsm.deserialize,
        serializeChecker=fsm.check,
    )
    replica = QueueReplica(
        free_address(), [free_address(), free_address()], conf=conf, journal=journal, fsm=fsm
    )  # fmt: skip
    try:
        leader = next(iter(replica._SyncObj__otherNodes))
        chunk = {"type": "append_entries", "term": 2, "commit_index": 40, "serialized": (b"part", True, False)}
        replica._SyncObj__transport._onMessageReceived(leader, chunk)
        for _ in range(20):
            replica.doTick(0.001)
        assert replica.raftCommitIndex == 1
        assert applied == [] and machine.list_queues() == []
    finally:
        # pysyncobj keeps the half-received snapshot file open until the transfer completes
        incoming = replica._SyncObj__serializer._Serializer__incomingTransmissionFile
        if incoming is not None:
            incoming.close()
        replica.destroy()
        kv.close()
