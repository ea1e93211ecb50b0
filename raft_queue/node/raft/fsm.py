"""QueueFSM: everything pysyncobj calls into the state machine, in one place (hashicorp/raft's ``FSM``).

pysyncobj drives four hooks, and every one of them runs on its tick thread (the SyncObj's auto-tick thread), so no
two of them ever run at the same time and none runs concurrently with itself:

- ``apply(index, data)``: the body of ``QueueReplica.apply_entry``, once per committed entry, in log order.
- ``serialize(tmp_path, meta)``: ``SyncObjConf.serializer``, when pysyncobj compacts its log.
- ``check()``: ``SyncObjConf.serializeChecker``, each tick, to learn whether that dump is running or done.
- ``deserialize(path)``: ``SyncObjConf.deserializer``, on the first tick after a start (when a dump exists) and
  when a leader finished streaming a snapshot to this node.

What does run concurrently with them: HTTP reads on the event loop thread (``QueueStateMachine.lock`` makes a read
and an apply, a freeze or a restore exclusive), and, while a dump is written, the ``snapshot-dump`` thread and its
writer process (``background_snapshots``), which read only the frozen copy, never the live store. ``meta`` is
pysyncobj's own (last entry, previous entry, cluster) tuple.

What the snapshot hooks add to pysyncobj:
- The dump is the state machine's checksummed ``state_machine.snapshot`` file, written off the tick thread, then
  renamed into place and made durable by ``check`` (on the tick thread) before it reports success; only then does
  pysyncobj trim the journal. A dump overtaken by a snapshot received meanwhile is discarded instead (FAILED).
  A received snapshot (which pysyncobj never fsyncs) is fsynced with its directory before anything trusts it.
- The store is replaced only when the snapshot is ahead of it (or a previous restore was interrupted), so a
  restart never rolls state back.
- The crash window between the rename of a new dump and the trim of the journal: pysyncobj would then clear the
  journal and lose acknowledged entries after the dump. ``deserialize`` trims the journal itself first, so
  pysyncobj finds it in the shape it expects and keeps every entry after the dump.
- A damaged snapshot stops the node (pysyncobj would log and carry on with whatever state it has).
"""

from __future__ import annotations

import logging
import os
import pickle
from collections.abc import Callable
from typing import Any

from raft_queue.node.raft.background_snapshots import BackgroundSnapshots
from raft_queue.node.raft.journal import DurableJournal
from state_machine.commands import UnsupportedVersion
from state_machine.machine import AppliedEntry, QueueStateMachine
from state_machine.snapshot import SnapshotCorrupt, read_header, verify_checksum

log = logging.getLogger(__name__)

#: Exit codes of a node that stops itself rather than diverge or serve corrupt data.
EXIT_NEWER_LOG = 75
EXIT_APPLY_FAILED = 70
EXIT_CORRUPT_SNAPSHOT = 78


def fsync_path(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def read_verified(path: str) -> tuple[int, Any]:
    """(state index, pysyncobj's meta tuple) of a snapshot whose whole-file checksum was verified first.

    Raises SnapshotCorrupt for any damage, including metadata that no longer unpickles to the expected shape. The
    records' framing is checked too before a restore uses them (``snapshot.restore`` runs the full ``verify``)."""
    verify_checksum(path)
    applied, raw = read_header(path)
    try:
        meta = pickle.loads(raw)
        last, prev = meta[0], meta[1]
        int(last[1]), int(prev[1])
    except Exception as exc:  # a checksum collision or a bug: never trust it
        raise SnapshotCorrupt(f"{path}: snapshot metadata is unreadable ({exc!r})") from exc
    return applied, meta


def snapshot_last_index(path: str) -> int:
    """The Raft index a snapshot file covers (0 when there is none). Raises SnapshotCorrupt."""
    if not os.path.exists(path):
        return 0
    return int(read_verified(path)[1][0][1])


def _align_journal(journal: DurableJournal, last: Any, prev: Any) -> None:
    """Trims the journal so it starts at the dump's (prev, last) entries, when it holds them."""
    if len(journal) < 2:
        return
    first_idx = journal[0][1]
    pos = prev[1] - first_idx
    if pos <= 0 or pos + 1 >= len(journal):
        return
    if tuple(journal[pos]) == tuple(prev) and tuple(journal[pos + 1]) == tuple(last):
        log.info("trimming journal to the snapshot at index %d before pysyncobj loads it", last[1])
        journal.deleteEntriesTo(pos)


class QueueFSM:
    """The state machine as pysyncobj sees it: apply, and the snapshot's serializer, checker and deserializer."""

    def __init__(
        self,
        machine: QueueStateMachine,
        journal: DurableJournal,
        on_applied: Callable[[AppliedEntry], None],
        dumps: BackgroundSnapshots,
    ) -> None:
        self._machine = machine
        self._journal = journal
        self._on_applied = on_applied
        #: The dump being written off the tick thread (``running``, ``join``, counters).
        self.dumps = dumps

    def apply(self, index: int, data: bytes) -> AppliedEntry | None:
        """Applies the committed entry at ``index``; tick thread.

        Concurrently: event-loop reads (excluded by the machine's lock) and a dump writer reading its frozen copy.
        ``on_applied`` runs here too (it only schedules work on the event loop). An entry this node cannot apply
        stops the node: pysyncobj would retry it forever, and skipping it would diverge."""
        try:
            applied = self._machine.apply(index, data)
        except UnsupportedVersion as exc:
            log.critical("stopping: %s", exc)
            os._exit(EXIT_NEWER_LOG)
        except BaseException:
            log.critical("stopping: applying log entry %d failed", index, exc_info=True)
            os._exit(EXIT_APPLY_FAILED)
        if applied is not None:
            self._on_applied(applied)
        return applied

    def serialize(self, tmp_path: str, meta: Any) -> None:
        """pysyncobj's ``serializer``; tick thread, between two applies, only when ``check`` said no dump runs.

        Freezes the state (a RocksDB checkpoint under the machine's lock, so event-loop reads wait for it, about a
        memtable flush), starts the ``snapshot-dump`` thread that has it written, and raises ``DumpStarted`` so
        that pysyncobj does not rename ``tmp_path`` (nothing is written there) and asks ``check`` instead."""
        self.dumps.start(tmp_path, meta)

    def check(self) -> int:
        """pysyncobj's ``serializeChecker``; tick thread, every tick that considers a compaction.

        Concurrently: the ``snapshot-dump`` thread, which marks the dump written (one attribute). Returns
        SERIALIZING while the dump is written, then, exactly once, SUCCESS (this call renamed it into place and
        fsynced the directory: pysyncobj may trim the journal) or FAILED (the dump failed, or a snapshot at or
        beyond its index was installed meanwhile and the older dump was deleted), then NOT_SERIALIZING."""
        return self.dumps.poll()

    def deserialize(self, path: str) -> Any:
        """pysyncobj's ``deserializer``: returns ``meta``; tick thread (first tick after a start, or a received
        snapshot). Concurrently: event-loop reads (a restore holds the machine's lock) and possibly a dump being
        written from this node's own frozen copy.

        fsyncs the file and its directory, verifies its checksum, records its index (a dump of this node's own
        that is not beyond it will not be renamed over it), restores the store only when the dump is ahead of it
        (or a restore was interrupted), then aligns the journal to the dump. Stops the node (78) when the snapshot
        is damaged or unreadable."""
        try:
            fsync_path(path)
            fsync_path(os.path.dirname(os.path.abspath(path)))
            applied_in_dump, meta = read_verified(path)
            self.dumps.installed(int(meta[0][1]))  # pysyncobj renamed it over the dump file: never rename an older one
            if self._machine.restoring or self._machine.applied_index < applied_in_dump:
                log.info("loading snapshot (state index %d > local %d)", applied_in_dump, self._machine.applied_index)
                self._machine.restore(path)
            _align_journal(self._journal, meta[0], meta[1])
            return meta
        except (SnapshotCorrupt, OSError) as exc:
            log.critical("stopping: snapshot %s cannot be used: %s", path, exc)
            os._exit(EXIT_CORRUPT_SNAPSHOT)
