"""The bridge between pysyncobj's log compaction and the state machine's snapshot file.

pysyncobj calls ``serialize(tmp_path, meta)`` on the tick thread (no fork when a serializer is set), renames
the file to ``fullDumpFile``, then trims the journal; it calls ``deserialize(path)`` on start and after a
leader streamed a snapshot to us. ``meta`` is pysyncobj's own (last entry, previous entry, cluster) tuple.

What this module adds:
- The dump is a checksummed ``state_machine.snapshot`` file, fsynced before pysyncobj renames it; a received
  snapshot (which pysyncobj never fsyncs) is fsynced with its directory before anything trusts it.
- The store is replaced only when the snapshot is ahead of it (or a previous restore was interrupted), so a
  restart never rolls state back.
- The crash window between the rename of a new dump and the trim of the journal: pysyncobj would then clear the
  journal and lose acknowledged entries after the dump. We trim the journal ourselves first, so pysyncobj
  finds it already in the shape it expects and keeps every entry after the dump.
- A damaged snapshot stops the node (pysyncobj would log and carry on with whatever state it has).
"""

from __future__ import annotations

import logging
import os
import pickle
from collections.abc import Callable
from typing import Any

from raft_queue.node.raft.journal import DurableJournal
from state_machine.machine import QueueStateMachine
from state_machine.snapshot import SnapshotCorrupt, read_header, verify_checksum

log = logging.getLogger(__name__)

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


def make_hooks(
    machine: QueueStateMachine, journal: DurableJournal
) -> tuple[Callable[[str, Any], None], Callable[[str], Any]]:
    def serialize(path: str, meta: Any) -> None:
        count = machine.dump(path, pickle.dumps(tuple(meta), protocol=pickle.HIGHEST_PROTOCOL))
        log.info("snapshot at raft index %d written (%d keys)", meta[0][1], count)

    def deserialize(path: str) -> Any:
        try:
            fsync_path(path)
            fsync_path(os.path.dirname(os.path.abspath(path)))
            applied_in_dump, meta = read_verified(path)
            if machine.restoring or machine.applied_index < applied_in_dump:
                log.info("loading snapshot (state index %d > local %d)", applied_in_dump, machine.applied_index)
                machine.restore(path)
            _align_journal(journal, meta[0], meta[1])
            return meta
        except (SnapshotCorrupt, OSError) as exc:
            log.critical("stopping: snapshot %s cannot be used: %s", path, exc)
            os._exit(EXIT_CORRUPT_SNAPSHOT)

    return serialize, deserialize
