"""FlushingTransport: the journal is fsynced before any message that acknowledges entries or a vote leaves.

No network: TCPTransport's constructor and send are replaced, so FlushingTransport's own send runs against a
real DurableJournal registered the way QueueReplica registers it (patches.register_journal).
"""

from __future__ import annotations

import errno
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pysyncobj.syncobj
import pytest
from pysyncobj.transport import TCPTransport

from raft_queue.node.raft import patches, transport
from raft_queue.node.raft.journal import DurableJournal
from raft_queue.node.raft.transport import FlushingTransport, flush_or_stop
from tests.unit.node.raft.support import Exited, fake_exit

#: Messages that acknowledge or replicate entries, or grant/ask a vote: the journal must be durable first.
FLUSH_BEFORE = frozenset({"append_entries", "next_node_idx", "request_vote", "response_vote"})
#: Messages that promise nothing about this node's log or vote.
NO_FLUSH = frozenset({"apply_command", "apply_command_response", "timeout_now"})


@dataclass
class Harness:
    transport: FlushingTransport
    journal: DurableJournal
    #: (message type, journal dirty when TCPTransport.send ran, fsyncs so far)
    sent: list[tuple[str, bool, int]] = field(default_factory=list)
    flushes: int = 0
    send_result: bool = True
    next_index: int = 1

    def add_entry(self) -> None:
        self.journal.add(b"command", self.next_index, 1)
        self.next_index += 1


@pytest.fixture
def harness(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Harness]:
    path = str(tmp_path / "journal")
    journal = DurableJournal(path)
    h: Harness

    def no_network_init(self: Any, syncObj: Any, selfNode: Any, otherNodes: Any) -> None:
        self._syncObj = syncObj

    def recording_send(self: Any, node: Any, message: dict[str, Any]) -> bool:
        h.sent.append((message["type"], h.journal.dirty, h.journal.syncs))
        return h.send_result

    real_flush = journal.flush

    def counting_flush() -> None:
        h.flushes += 1
        real_flush()

    monkeypatch.setattr(TCPTransport, "__init__", no_network_init)
    monkeypatch.setattr(TCPTransport, "send", recording_send)
    monkeypatch.setattr(journal, "flush", counting_flush)
    monkeypatch.setitem(patches._JOURNALS, path, journal)
    sync_obj = SimpleNamespace(conf=SimpleNamespace(journalFile=path))
    h = Harness(FlushingTransport(sync_obj, None, []), journal)
    yield h
    journal._destroy()


def test_every_message_type_pysyncobj_sends_is_classified() -> None:
    # Discovered from pysyncobj's source, so an upgrade that adds a message type fails here until it is judged.
    source = Path(pysyncobj.syncobj.__file__).read_text()
    sent_types = set(re.findall(r"""['"]type['"]\s*:\s*['"](\w+)['"]""", source))
    assert sent_types == FLUSH_BEFORE | NO_FLUSH
    assert transport._FLUSH_BEFORE == FLUSH_BEFORE


@pytest.mark.parametrize("kind", sorted(FLUSH_BEFORE))
def test_flushes_before_messages_that_acknowledge_or_replicate(harness: Harness, kind: str) -> None:
    harness.add_entry()
    harness.add_entry()
    assert harness.journal.dirty
    syncs = harness.journal.syncs
    assert harness.transport.send("node", {"type": kind}) is True
    # Durable before the message left, with one fsync for both entries (group commit).
    assert harness.sent == [(kind, False, syncs + 1)]
    assert harness.flushes == 1
    reopened = DurableJournal.scan(harness.journal.path)
    assert (reopened.first_index, reopened.last_index) == (1, 2)


@pytest.mark.parametrize("kind", sorted(NO_FLUSH))
def test_does_not_flush_before_other_messages(harness: Harness, kind: str) -> None:
    harness.add_entry()
    syncs = harness.journal.syncs
    assert harness.transport.send("node", {"type": kind}) is True
    assert harness.sent == [(kind, True, syncs)]
    assert harness.flushes == 0


def test_flush_is_called_even_when_nothing_is_new(harness: Harness) -> None:
    # A vote with nothing unflushed still goes through flush (a no-op then): no extra fsync.
    harness.add_entry()
    harness.transport.send("node", {"type": "append_entries"})
    syncs = harness.journal.syncs
    harness.transport.send("node", {"type": "response_vote"})
    assert harness.flushes == 2
    assert harness.journal.syncs == syncs


def test_only_new_entries_cost_an_fsync(harness: Harness) -> None:
    harness.add_entry()
    for _ in range(3):
        harness.transport.send("node", {"type": "append_entries"})
    harness.add_entry()
    harness.transport.send("node", {"type": "next_node_idx"})
    syncs = [s for _, _, s in harness.sent]
    assert syncs[1] == syncs[0] == syncs[2] and syncs[3] == syncs[2] + 1


def test_send_passes_on_the_transports_answer(harness: Harness) -> None:
    harness.send_result = False
    assert harness.transport.send("node", {"type": "append_entries"}) is False
    assert harness.transport.send("node", {"type": "apply_command"}) is False


class DiskFault:
    """Makes fsync/fdatasync fail with EIO while ``active``."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.active = True
        real_fdatasync, real_fsync = os.fdatasync, os.fsync

        def fdatasync(fd: int) -> None:
            self._check()
            real_fdatasync(fd)

        def fsync(fd: int) -> None:
            self._check()
            real_fsync(fd)

        monkeypatch.setattr(os, "fdatasync", fdatasync)
        monkeypatch.setattr(os, "fsync", fsync)

    def _check(self) -> None:
        if self.active:
            raise OSError(errno.EIO, "Input/output error")


def test_a_failed_flush_stops_the_node_before_the_message_leaves(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    harness.add_entry()
    fault = DiskFault(monkeypatch)
    monkeypatch.setattr(os, "_exit", fake_exit)
    with pytest.raises(Exited) as exited:
        harness.transport.send("node", {"type": "append_entries"})
    assert exited.value.code == transport.EXIT_JOURNAL_FAILED == 74
    assert harness.sent == []
    fault.active = False  # the disk answers again, but the journal stays failed: its state is unknown
    with pytest.raises(Exited):
        harness.transport.send("node", {"type": "request_vote"})
    assert harness.sent == []


def test_flush_or_stop_exits_74_on_journal_failed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    journal = DurableJournal(str(tmp_path / "journal"))
    fault = DiskFault(monkeypatch)
    fault.active = False
    try:
        journal.add(b"x", 1, 1)
        fault.active = True
        monkeypatch.setattr(os, "_exit", fake_exit)
        with pytest.raises(Exited) as exited:
            flush_or_stop(journal)
        assert exited.value.code == 74
    finally:
        fault.active = False
        journal._destroy()  # a failed journal only closes its file


def test_flush_or_stop_makes_the_journal_durable(tmp_path: Path) -> None:
    journal = DurableJournal(str(tmp_path / "journal"))
    try:
        journal.add(b"x", 1, 1)
        syncs = journal.syncs
        flush_or_stop(journal)
        assert not journal.dirty and journal.syncs == syncs + 1
    finally:
        journal._destroy()


def test_the_transport_finds_the_journal_registered_for_its_journal_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(TCPTransport, "__init__", lambda self, *args: None)
    missing = SimpleNamespace(conf=SimpleNamespace(journalFile=str(tmp_path / "unregistered")))
    with pytest.raises(KeyError):
        FlushingTransport(missing, None, [])
