"""BackgroundSnapshots: pysyncobj's snapshot dump, written off the tick thread (by a process of its own).

A dump of 1,000,000 queued messages is 2,000,004 keys, 358 MB, and took 3.6 s to write (measured,
``state_machine.snapshot.dump`` on RocksDB). On the tick thread that is 3.6 s without heartbeats: longer than the
election timeout, so every compaction on a leader with a large backlog would cost an election, and HTTP reads
wait for the state machine's lock meanwhile.

How it plugs into pysyncobj 0.3.17 (``fsm.QueueFSM``'s ``serialize`` and ``check`` call ``start`` and ``poll``
on the tick thread):
- ``start(tmp, meta)`` takes a frozen copy of the state (a RocksDB checkpoint: hard links and a memtable
  flush, under the state machine's lock, so it is exactly the state at ``meta``'s last entry), starts a thread
  that writes the dump from that copy, and raises ``DumpStarted``. pysyncobj catches it and skips its own rename
  of ``tmp`` (nothing is there to rename); from then on it asks the checker, not its own bookkeeping.
- The thread has ``<dump>.partial`` written and fsynced (by default by a process of its own, ``dump_writer``, so
  that the dump's Python loop does not share the GIL with the tick thread), renames it over the dump file and fsyncs
  the directory, in that order, then reports success. Only then does the checker say ``SUCCESS``, and only then does
  pysyncobj trim the journal: the same order as a synchronous dump (a complete dump is durable before any entry it
  covers is removed), so ``fsm.QueueFSM.deserialize``'s crash window is unchanged.
- While a dump runs the checker says ``SERIALIZING``: pysyncobj starts no other dump and sends no snapshot
  chunks (it does the same while its own forked dump runs).
A crash mid-dump leaves ``<dump>.partial`` and the checkpoint directory; both are removed at the next start (the
writer process notices that its parent is gone and stops; it never renames anything).
"""

from __future__ import annotations

import logging
import os
import pickle
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from pysyncobj.config import SERIALIZER_STATE

from raft_queue.node.raft import dump_writer
from state_machine.kv import FrozenKV
from state_machine.machine import QueueStateMachine

log = logging.getLogger(__name__)


#: Writes the dump of a frozen copy (opened by the caller; its directory given too) to a path, with the metadata.
Writer = Callable[[FrozenKV, str, str, bytes], int]


def write_in_process(source: FrozenKV, checkpoint_dir: str, path: str, meta: bytes) -> int:
    """The default ``Writer``: ``dump_writer`` in a child process reads the checkpoint (read-only)."""
    proc = subprocess.run(
        [sys.executable, "-m", dump_writer.__name__, checkpoint_dir, path, str(os.getpid())],
        input=meta,
        capture_output=True,
        check=False,
    )
    if proc.returncode != 0:
        detail = proc.stderr.decode(errors="replace").strip().splitlines()[-3:]
        raise RuntimeError(f"the snapshot writer process exited with {proc.returncode}: {' | '.join(detail)}")
    return int(proc.stdout)


class DumpStarted(Exception):
    """Raised by the serializer so that pysyncobj does not rename a file that is not written yet."""


def _fsync_dir(path: str) -> None:
    fd = os.open(os.path.dirname(os.path.abspath(path)) or ".", os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class BackgroundSnapshots:
    def __init__(
        self, machine: QueueStateMachine, dump_file: str, checkpoint_dir: str, writer: Writer = write_in_process
    ) -> None:
        self._machine = machine
        self._writer = writer
        self._dump_file = dump_file
        self._partial = dump_file + ".partial"
        self._checkpoint_dir = checkpoint_dir
        self._state = SERIALIZER_STATE.NOT_SERIALIZING
        self._thread: threading.Thread | None = None
        self.dumps_written = 0
        self.last_dump_s = 0.0
        self._remove_leftovers()

    def _remove_leftovers(self) -> None:
        shutil.rmtree(self._checkpoint_dir, ignore_errors=True)
        if os.path.exists(self._partial):
            os.unlink(self._partial)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self, tmp_path: str, meta: Any) -> None:
        """Tick thread (``QueueFSM.serialize``): freeze the state, have it dumped on a thread, raise DumpStarted."""
        if self.running:  # pysyncobj asks the checker first, so this means a bug: never run two dumps
            raise RuntimeError("a snapshot dump is already running")
        self._remove_leftovers()
        started = time.monotonic()
        source = self._machine.frozen_copy(self._checkpoint_dir)
        frozen_s = time.monotonic() - started
        raw_meta = pickle.dumps(tuple(meta), protocol=pickle.HIGHEST_PROTOCOL)
        self._state = SERIALIZER_STATE.SERIALIZING
        self._thread = threading.Thread(
            target=self._write, args=(source, raw_meta, int(meta[0][1]), started), name="snapshot-dump", daemon=True
        )
        self._thread.start()
        log.info("snapshot at raft index %d: state frozen in %.3f s, writing in the background", meta[0][1], frozen_s)
        raise DumpStarted(tmp_path)

    def _write(self, source: FrozenKV, meta: bytes, index: int, started: float) -> None:
        try:
            count = self._writer(source, self._checkpoint_dir, self._partial, meta)
            os.replace(self._partial, self._dump_file)
            _fsync_dir(self._dump_file)
        except Exception:
            log.exception("writing the snapshot at raft index %d failed; pysyncobj will try again", index)
            source.close()
            self._state = SERIALIZER_STATE.FAILED  # reported only once the copy is gone
            return
        source.close()
        self.dumps_written += 1
        self.last_dump_s = time.monotonic() - started
        log.info("snapshot at raft index %d written (%d keys, %.2f s)", index, count, self.last_dump_s)
        self._state = SERIALIZER_STATE.SUCCESS

    def poll(self) -> int:
        """Tick thread (``QueueFSM.check``): the dump's SERIALIZER_STATE. SUCCESS and FAILED are reported once."""
        state = self._state
        if state in (SERIALIZER_STATE.SUCCESS, SERIALIZER_STATE.FAILED):
            self._state = SERIALIZER_STATE.NOT_SERIALIZING
        return int(state)

    def join(self, timeout: float) -> None:
        """Waits for a running dump (a node stopping lets it finish rather than leave a partial file)."""
        thread = self._thread
        if thread is not None:
            thread.join(timeout)
