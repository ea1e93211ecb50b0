"""A real single-node pysyncobj SyncObj running on DurableJournal replays its state after a restart."""

from __future__ import annotations

import socket
from collections.abc import Callable
from pathlib import Path

import pysyncobj.syncobj
import pytest
from pysyncobj import SyncObj, SyncObjConf, replicated
from pysyncobj.batteries import ReplList

from raft_queue.node.raft.journal import DurableJournal, JournalSummary

COMMANDS = 300


class Appender(SyncObj):  # type: ignore[misc]  # pysyncobj is untyped
    def __init__(self, self_node: str, conf: SyncObjConf) -> None:
        # Set before SyncObj starts its tick thread, which may replay the journal at once.
        self.items: list[int] = []
        super().__init__(self_node, [], conf)

    @replicated  # type: ignore[untyped-decorator]
    def append(self, item: int) -> int:
        self.items.append(item)
        return len(self.items)


def free_address() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{s.getsockname()[1]}"


@pytest.fixture
def journals(monkeypatch: pytest.MonkeyPatch) -> list[DurableJournal]:
    """Makes pysyncobj build a DurableJournal (through its createJournal seam) and records each one."""
    created: list[DurableJournal] = []

    def create(path: str | None) -> DurableJournal:
        assert path is not None
        created.append(DurableJournal(path))
        return created[-1]

    monkeypatch.setattr(pysyncobj.syncobj, "createJournal", create)
    return created


def make_conf(path: str, **options: object) -> SyncObjConf:
    # A 5 ms tick (default 50 ms) only makes the few hundred synchronous calls quicker.
    return SyncObjConf(journalFile=path, autoTick=True, appendEntriesUseBatch=False, autoTickPeriod=0.005, **options)


def run(obj: SyncObj, body: Callable[[], None]) -> None:
    try:
        body()
    finally:
        obj.destroy_synchronous()


def test_state_is_replayed_from_the_journal(tmp_path: Path, journals: list[DurableJournal]) -> None:
    path = str(tmp_path / "journal")
    first = Appender(free_address(), make_conf(path))

    def fill() -> None:
        for i in range(COMMANDS):
            assert first.append(i, sync=True, timeout=5) == i + 1

    run(first, fill)
    summary = DurableJournal.scan(path)
    # The initial no-op, the commands and the leader's no-op; every commit flushed first.
    assert summary == JournalSummary(1, COMMANDS + 2, COMMANDS + 2, summary.last_term, 0)
    assert summary.last_term >= 1
    assert journals[0].syncs >= COMMANDS  # single node: each commit flushed by setRaftCommitIndex
    assert not journals[0].dirty

    second = Appender(free_address(), make_conf(path))

    def check() -> None:
        assert second.append(-1, sync=True, timeout=5) == COMMANDS + 1  # applied after the replay
        assert second.items == [*range(COMMANDS), -1]

    run(second, check)
    assert journals[1].getCurrentTerm() > journals[0].getCurrentTerm()


def test_compaction_and_dump_reload(tmp_path: Path, journals: list[DurableJournal]) -> None:
    """pysyncobj compacts through deleteEntriesTo and, on restart, reloads its dump with clear() + add()."""
    path = str(tmp_path / "journal")

    def conf() -> SyncObjConf:
        return make_conf(path, fullDumpFile=str(tmp_path / "dump"), logCompactionMinEntries=50, useFork=False)

    items = ReplList()
    first = SyncObj(free_address(), [], conf(), consumers=[items])

    def fill() -> None:
        for i in range(COMMANDS):
            items.append(i, sync=True, timeout=5)

    run(first, fill)
    summary = DurableJournal.scan(path)
    assert summary.first_index > 1  # compacted at least once
    assert summary.last_index == COMMANDS + 2

    restored = ReplList()
    second = SyncObj(free_address(), [], conf(), consumers=[restored])

    def check() -> None:
        restored.append(-1, sync=True, timeout=5)
        assert restored.rawData() == [*range(COMMANDS), -1]

    run(second, check)
