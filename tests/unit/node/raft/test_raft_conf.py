"""conf.raft_conf: the SyncObjConf every node runs with is valid for pysyncobj and tuned for durability/failover."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pysyncobj.syncobj
import pytest
from pysyncobj import SyncObjConf

from raft_queue.config import NodeConfig, Peer
from raft_queue.node.raft.conf import raft_conf

SECRET = "a-cluster-secret-of-some-length"
PEERS = (
    Peer("n1", "127.0.0.1:7001", "http://127.0.0.1:8001"),
    Peer("n2", "127.0.0.1:7002", "http://127.0.0.1:8002"),
    Peer("n3", "127.0.0.1:7003", "http://127.0.0.1:8003"),
)
ELECTION_RANGES = [(0.4, 1.2), (0.11, 0.12), (0.15, 0.3), (0.3, 0.6), (1.0, 3.0), (5.0, 10.0)]


class Hooks:
    """Stands in for fsm.QueueFSM: only wired, never called."""

    def serialize(self, tmp_path: str, meta: Any) -> None:
        raise AssertionError("not called")

    def deserialize(self, path: str) -> Any:
        raise AssertionError("not called")

    def check(self) -> int:
        raise AssertionError("not called")


HOOKS = Hooks()


def make(tmp_path: Path, **overrides: Any) -> tuple[NodeConfig, SyncObjConf]:
    config = NodeConfig(node_id="n1", peers=PEERS, data_dir=tmp_path, cluster_secret=SECRET, **overrides)
    journal, dump = str(tmp_path / "raft" / "journal"), str(tmp_path / "raft" / "snapshot")
    return config, raft_conf(config, journal, dump, HOOKS)


def test_defaults_pass_pysyncobjs_validate_and_wire_every_seam(tmp_path: Path) -> None:
    config, conf = make(tmp_path)
    conf.validate()
    assert conf.password == SECRET  # Raft traffic is encrypted and authenticated with the cluster secret
    assert pysyncobj.syncobj.HAS_CRYPTO, "a password needs the cryptography module"
    assert conf.journalFile == str(tmp_path / "raft" / "journal")
    assert conf.fullDumpFile == str(tmp_path / "raft" / "snapshot")
    # Same directory: the directory fsync after the journal trim also makes the dump's rename durable.
    assert Path(conf.journalFile).parent == Path(conf.fullDumpFile).parent
    assert conf.serializer == HOOKS.serialize and conf.deserializer == HOOKS.deserialize
    assert conf.serializeChecker == HOOKS.check  # dumps run off the tick thread; pysyncobj asks the checker
    assert conf.appendEntriesUseBatch is False  # send each entry at once; batching is GroupCommitter's job
    assert conf.commandsWaitLeader is False  # no leader: fail now (MISSING_LEADER), never commit much later
    assert conf.logCompactionSplit is False  # dumps run off the tick thread; Node staggers the size thresholds
    assert conf.dynamicMembershipChange is False
    assert conf.autoTick is True
    assert conf.logCompactionMinEntries == config.snapshot_every_entries
    assert conf.logCompactionMinTime == config.snapshot_min_interval_s
    assert conf.bindAddress == config.raft_bind == "127.0.0.1:7001"


def test_defaults_are_the_documented_failover_numbers(tmp_path: Path) -> None:
    _, conf = make(tmp_path)
    assert (conf.raftMinTimeout, conf.raftMaxTimeout) == (0.4, 1.2)
    assert conf.leaderFallbackTimeout <= 1.2  # pysyncobj's default is 30 s
    assert conf.connectionRetryTime < 1.0  # pysyncobj's default is 5 s
    assert conf.appendEntriesPeriod <= 0.05


@pytest.mark.parametrize(("emin", "emax"), ELECTION_RANGES)
def test_every_valid_election_range_gives_a_valid_and_sane_conf(tmp_path: Path, emin: float, emax: float) -> None:
    _, conf = make(tmp_path, election_timeout_min_s=emin, election_timeout_max_s=emax)
    conf.validate()
    assert (conf.raftMinTimeout, conf.raftMaxTimeout) == (emin, emax)
    # A deposed leader steps down within one election timeout (no CheckQuorum in pysyncobj).
    assert conf.appendEntriesPeriod < conf.leaderFallbackTimeout <= conf.raftMaxTimeout
    # Several heartbeats per election timeout, so one lost message does not start an election.
    assert conf.appendEntriesPeriod * 3 < conf.raftMinTimeout
    # A peer that comes back is redialled well within an election timeout at the defaults, and always < 1 s.
    assert 0 < conf.connectionRetryTime < 1.0
    # A connection is not declared dead before a leader could have been elected without it.
    assert conf.connectionTimeout >= conf.raftMaxTimeout
    # The tick (which drives heartbeats, flushes and apply) runs at least as often as heartbeats are due.
    assert 0 < conf.autoTickPeriod <= conf.appendEntriesPeriod


def test_the_conf_is_what_syncobj_itself_accepts(tmp_path: Path) -> None:
    # SyncObj.__init__ calls validate() first; a conf that validates also passes the serializer pairing rules.
    _, conf = make(tmp_path)
    assert (conf.serializer is None) == (conf.deserializer is None)
    assert conf.fullDumpFile is not None
    assert conf.appendEntriesBatchSizeBytes > 0 and conf.logCompactionBatchSize > 0
