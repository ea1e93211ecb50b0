"""pysyncobj's process-wide seams, installed explicitly by ``install()``, never on import.

Two changes to pysyncobj's module state, both idempotent:
- ``pysyncobj.syncobj.createJournal`` is replaced by a lookup in a registry of journals: ``QueueReplica`` opens its
  ``DurableJournal`` (checksummed records, fsynced term/vote, crash-safe trims) and registers it under its
  ``journalFile`` before it creates the SyncObj, which then calls ``createJournal(journalFile)``.
- A logger filter on ``pysyncobj.syncobj`` demotes one false alarm to DEBUG: pysyncobj logs CRITICAL "truncating
  already-applied log entries" whenever an append_entries overlaps entries a follower holds, even when it re-adds
  the very same entries (a leader resending after a ``reset``). Our journal re-adopts identical entries and fails
  with ``JournalDiverged`` (the node stops) when a committed entry would really be replaced, so that line says
  nothing; every other CRITICAL still reaches the log.

``QueueReplica.__init__`` calls ``install()`` (node start); importing this package changes nothing in pysyncobj.
"""

from __future__ import annotations

import logging
import threading

import pysyncobj.syncobj as _syncobj_module

from raft_queue.node.raft.journal import DurableJournal

_FALSE_ALARM = "truncating already-applied log entries"
_syncobj_log = logging.getLogger(_syncobj_module.__name__)
_JOURNALS: dict[str, DurableJournal] = {}
_install_lock = threading.Lock()


def demote_truncation_alarm(record: logging.LogRecord) -> bool:
    """A logger filter for pysyncobj.syncobj: its overlap-truncation CRITICAL becomes DEBUG (see above)."""
    if record.levelno == logging.CRITICAL and isinstance(record.msg, str) and record.msg.startswith(_FALSE_ALARM):
        record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        return _syncobj_log.isEnabledFor(logging.DEBUG)
    return True


def create_journal(journalFile: str | None = None) -> DurableJournal:
    """pysyncobj's ``createJournal`` seam: the journal registered for ``journalFile``, never a new one."""
    if journalFile is None or journalFile not in _JOURNALS:
        raise RuntimeError("raft-queue opens its journal before creating the SyncObj; none registered")
    return _JOURNALS[journalFile]


def register_journal(journal_file: str, journal: DurableJournal) -> None:
    """Makes ``journal`` the one pysyncobj (and ``FlushingTransport``) finds for ``journal_file``."""
    _JOURNALS[journal_file] = journal


def registered_journal(journal_file: str) -> DurableJournal:
    """The journal registered for ``journal_file`` (KeyError when there is none)."""
    return _JOURNALS[journal_file]


def install() -> None:
    """Installs the journal seam and the log filter; a second call changes nothing."""
    with _install_lock:
        _syncobj_module.createJournal = create_journal
        if demote_truncation_alarm not in _syncobj_log.filters:
            _syncobj_log.addFilter(demote_truncation_alarm)


def installed() -> bool:
    """Whether ``install()`` ran in this process (both seams are in place)."""
    return _syncobj_module.createJournal is create_journal and demote_truncation_alarm in _syncobj_log.filters
