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
  that the dump's Python loop does not share the GIL with the tick thread) and marks it written. It renames
  nothing: the checker does, on the tick thread (``poll``): it renames the partial over the dump file and fsyncs
  the directory, in that order, and only then says ``SUCCESS``; only then does pysyncobj trim the journal: the
  same order as a synchronous dump (a complete dump is durable before any entry it covers is removed), so
  ``fsm.QueueFSM.deserialize``'s crash window is unchanged.
- pysyncobj installs a snapshot streamed by the leader whatever its own dump is doing: on the tick thread, it
  renames the received file over the dump file and calls the deserializer, which records the installed index
  here (``installed``). A dump at or below that index must never be renamed over it (the next start would load
  the older dump, find a journal that does not start at its entries and clear it: entries acknowledged after
  the installed snapshot lost). The rename is on the tick thread so that the two cannot interleave, and ``poll``
  compares the indexes: the older dump is deleted and reported ``FAILED`` (pysyncobj trims nothing and dumps
  again later). raft_queue/DESIGN.md ("A snapshot received while a dump is written") says why FAILED.
- While a dump runs the checker says ``SERIALIZING``: pysyncobj starts no other dump and sends no snapshot
  chunks (it does the same while its own forked dump runs).
A crash mid-dump leaves ``<dump>.partial`` and the checkpoint directory; both are removed at the next start (the
writer process notices that its parent is gone and stops; it never renames anything). So is a partial written after
pysyncobj stopped asking the checker (a node stopping): the journal was never trimmed for it.
"""

from __future__ import annotations

import contextlib
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


def _hold(path: str) -> int | None:
    """An fd on ``path`` (None when there is no such file): the file's blocks outlive its last name until it closes."""
    try:
        return os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return None


def _close_off_thread(fd: int | None) -> None:
    """Closes ``fd`` on a thread of its own. The last reference to a file that lost its last name frees its blocks
    as it goes: 80 ms for a 360 MiB dump on ext4 (0.22 ms per MiB, measured), which the tick thread must not pay.
    A rename over a file, or an unlink, that drops the last reference pays the same inside the system call."""
    if fd is not None:
        threading.Thread(target=os.close, args=(fd,), name="snapshot-free", daemon=True).start()


def _unlink_off_thread(path: str) -> None:
    """Removes the name ``path`` now; its blocks are freed off this thread."""
    fd = _hold(path)
    try:
        os.unlink(path)
    finally:
        _close_off_thread(fd)


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
        #: Set by the ``snapshot-dump`` thread as its last step (True: the partial is written), read by ``poll``.
        self._written: bool | None = None
        self._keys = 0
        self._index = 0
        self._started = 0.0
        #: The highest index of a snapshot installed (``installed``) since the running dump started.
        self._installed_index = 0
        self.dumps_written = 0
        self.last_dump_s = 0.0
        self._remove_leftovers()

    def _remove_leftovers(self) -> None:
        shutil.rmtree(self._checkpoint_dir, ignore_errors=True)
        if os.path.exists(self._partial):
            os.unlink(self._partial)

    @property
    def running(self) -> bool:
        """A dump was started and its outcome is not reported yet (written or not); read on the tick thread."""
        return bool(self._state == SERIALIZER_STATE.SERIALIZING)

    def start(self, tmp_path: str, meta: Any) -> None:
        """Tick thread (``QueueFSM.serialize``): freeze the state, have it dumped on a thread, raise DumpStarted."""
        if self.running:  # pysyncobj asks the checker first, so this means a bug: never run two dumps
            raise RuntimeError("a snapshot dump is already running")
        self._remove_leftovers()
        started = time.monotonic()
        source = self._machine.frozen_copy(self._checkpoint_dir)
        frozen_s = time.monotonic() - started
        raw_meta = pickle.dumps(tuple(meta), protocol=pickle.HIGHEST_PROTOCOL)
        self._index, self._started = int(meta[0][1]), started
        self._installed_index = 0
        self._written = None
        self._state = SERIALIZER_STATE.SERIALIZING
        self._thread = threading.Thread(
            target=self._write, args=(source, raw_meta, self._index), name="snapshot-dump", daemon=True
        )
        self._thread.start()
        log.info("snapshot at raft index %d: state frozen in %.3f s, writing in the background", meta[0][1], frozen_s)
        raise DumpStarted(tmp_path)

    def _write(self, source: FrozenKV, meta: bytes, index: int) -> None:
        """The ``snapshot-dump`` thread: has the partial written (and fsynced); renames nothing."""
        try:
            self._keys = self._writer(source, self._checkpoint_dir, self._partial, meta)
        except Exception:
            log.exception("writing the snapshot at raft index %d failed; pysyncobj will try again", index)
            written = False
        else:
            written = True
        source.close()
        self._written = written  # the last step: poll acts on it only once the copy is gone

    def installed(self, index: int) -> None:
        """Tick thread (``QueueFSM.deserialize``): a snapshot at ``index`` is now the dump file."""
        self._installed_index = max(self._installed_index, index)

    def poll(self) -> int:
        """Tick thread (``QueueFSM.check``): the dump's SERIALIZER_STATE. SUCCESS and FAILED are reported once.

        A written dump is renamed into place (and the directory fsynced) here, on the tick thread, the thread on
        which pysyncobj installs a received snapshot, so that the two never interleave; unless a snapshot at or
        beyond the dump's index was installed since it started: then the older dump is deleted, and FAILED."""
        if self._state != SERIALIZER_STATE.SERIALIZING:
            return int(SERIALIZER_STATE.NOT_SERIALIZING)
        written = self._written
        if written is None:
            return int(SERIALIZER_STATE.SERIALIZING)
        if self._thread is not None:
            self._thread.join()  # past its last step already: the next dump never meets this one's thread
        self._state = SERIALIZER_STATE.NOT_SERIALIZING
        if written and self._finish():
            return int(SERIALIZER_STATE.SUCCESS)
        return int(SERIALIZER_STATE.FAILED)

    def _finish(self) -> bool:
        """Tick thread: renames the written partial over the dump file and fsyncs the directory; False if not.

        The replaced dump is held open across the rename and closed off the tick thread, so that the rename does
        not free its blocks here (0.7 ms instead of 80 ms for a 360 MiB dump); a discarded partial likewise."""
        index = self._index
        try:
            if self._installed_index >= index:
                log.info(
                    "snapshot at raft index %d discarded: a snapshot at index %d was installed while it was written",
                    index,
                    self._installed_index,
                )
                _unlink_off_thread(self._partial)
                return False
            replaced = _hold(self._dump_file)
            try:
                os.replace(self._partial, self._dump_file)
                _fsync_dir(self._dump_file)
            finally:
                _close_off_thread(replaced)
        except Exception:
            log.exception("putting the snapshot at raft index %d in place failed; pysyncobj will try again", index)
            with contextlib.suppress(OSError):
                _unlink_off_thread(self._partial)
            return False
        self.dumps_written += 1
        self.last_dump_s = time.monotonic() - self._started
        log.info("snapshot at raft index %d written (%d keys, %.2f s)", index, self._keys, self.last_dump_s)
        return True

    def join(self, timeout: float) -> None:
        """Waits for a running dump's thread (a node stopping lets it finish rather than leave a writer behind)."""
        thread = self._thread
        if thread is not None:
            thread.join(timeout)
