"""patches: pysyncobj's process-wide seams are installed by ``install()`` only, once, and do what they say."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

import pysyncobj.syncobj
import pytest

from raft_queue.node.raft import patches
from raft_queue.node.raft.journal import DurableJournal

#: Imports every module of the adapter and the node, then reports pysyncobj's state before and after install().
PROBE = """
import importlib, json, logging, pkgutil
import pysyncobj.journal, pysyncobj.syncobj
import raft_queue.node.raft as adapter

def state():
    log = logging.getLogger("pysyncobj.syncobj")
    return {
        "stock_create_journal": pysyncobj.syncobj.createJournal is pysyncobj.journal.createJournal,
        "filters": len(log.filters),
    }

modules = [m.name for m in pkgutil.walk_packages(adapter.__path__, adapter.__name__ + ".")]
for name in modules + ["raft_queue.node.node", "raft_queue.node.server"]:
    importlib.import_module(name)
from raft_queue.node.raft import patches
imported = state()
patches.install()
once = state()
patches.install()
print(json.dumps({"modules": modules, "imported": imported, "once": once, "twice": state(),
                  "installed": patches.installed()}))
"""


def test_importing_the_adapter_changes_nothing_and_install_does_it_once() -> None:
    proc = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=60, check=True)
    seen = json.loads(proc.stdout)
    assert "raft_queue.node.raft.replica" in seen["modules"] and "raft_queue.node.raft.patches" in seen["modules"]
    assert seen["imported"] == {"stock_create_journal": True, "filters": 0}
    assert seen["once"] == {"stock_create_journal": False, "filters": 1}
    assert seen["twice"] == seen["once"]
    assert seen["installed"] is True


def test_pysyncobj_builds_the_registered_journal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # QueueReplica registers the journal it opened; pysyncobj's createJournal seam must hand back that object.
    patches.install()
    assert pysyncobj.syncobj.createJournal is patches.create_journal
    journal = DurableJournal(str(tmp_path / "journal"))
    try:
        monkeypatch.setitem(patches._JOURNALS, journal.path, journal)
        assert pysyncobj.syncobj.createJournal(journal.path) is journal
    finally:
        journal._destroy()
    with pytest.raises(RuntimeError):
        patches.create_journal(None)
    with pytest.raises(RuntimeError):
        patches.create_journal("/nonexistent/journal")


def test_pysyncobj_overlap_truncation_alarm_is_demoted_and_other_criticals_pass(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The journal re-adopts identical entries and stops on a real divergence, so pysyncobj's CRITICAL on every
    overlapping append_entries is a false alarm; every other CRITICAL line must still reach the log."""
    patches.install()
    syncobj_log = logging.getLogger("pysyncobj.syncobj")
    with caplog.at_level(logging.INFO):
        syncobj_log.critical(
            "truncating already-applied log entries from index %d (last applied: %d) - state machine may have "
            "diverged from other cluster members",
            38,
            38,
        )
        syncobj_log.critical("something else went wrong")
    assert [(r.levelname, r.getMessage()) for r in caplog.records] == [("CRITICAL", "something else went wrong")]
