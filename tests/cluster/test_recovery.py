"""Recovery: a wiped node catches up by snapshot; a node with inconsistent or damaged files refuses to start."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.cluster.harness import SECRET, Cluster, http_json, running_cluster, wait_until

pytestmark = pytest.mark.cluster

SNAPSHOT_OFTEN = ["--snapshot-every-entries", "40", "--snapshot-min-interval-s", "1"]


def _write(cluster: Cluster, queue: str, n: int, start: int = 0) -> None:
    """n sequential writes (so n log entries) spread over the live nodes."""
    live = [n.url for n in cluster.nodes if n.alive]
    for i in range(start, start + n):
        code, body = http_json(live[i % len(live)] + f"/v1/queues/{queue}/messages", "POST", {"body": f"m{i}"})
        assert code == 201, body


def test_wiped_node_catches_up_by_snapshot_install(tmp_path: Path) -> None:
    with running_cluster(tmp_path, extra_args=SNAPSHOT_OFTEN) as cluster:
        leader = cluster.wait_for_leader()
        victim = (leader + 1) % 3
        assert http_json(cluster.urls[leader] + "/v1/queues/big", "PUT", {})[0] == 201
        _write(cluster, "big", 150)
        cluster.stop(victim)
        cluster.wipe(victim)
        _write(cluster, "big", 150, start=150)
        # The leader compacted its log past what the wiped node needs, so only a snapshot can bring it back.
        leader_snapshot = cluster.nodes[leader].data_dir / "raft" / "snapshot"
        wait_until("the leader to write a snapshot", leader_snapshot.exists, timeout=30)
        cluster.start(victim)
        expected = http_json(cluster.urls[leader] + "/v1/queues/big")[1]["counts"]

        def caught_up() -> bool:
            code, info = http_json(cluster.urls[victim] + "/v1/queues/big?consistency=local")
            return code == 200 and info["counts"] == expected

        wait_until("the wiped node to hold the same queue state", caught_up, timeout=60)
        log = cluster.nodes[victim].log_path.read_text()
        assert "loading snapshot" in log, "the wiped node caught up without a snapshot install"
        # And it serves correct reads and writes afterwards.
        _write(cluster, "big", 3, start=300)
        code, info = http_json(cluster.urls[victim] + "/v1/queues/big")
        assert code == 200 and info["counts"]["enqueued_total"] == 303


def _start_alone(cluster: Cluster, i: int) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cluster.command(i), capture_output=True, text=True, timeout=60, check=False)


def test_state_ahead_of_the_log_refuses_to_start(tmp_path: Path) -> None:
    with running_cluster(tmp_path) as cluster:
        assert http_json(cluster.urls[0] + "/v1/queues/q", "PUT", {})[0] == 201
        _write(cluster, "q", 20)
        wait_until("n2 to apply everything", lambda: cluster.status(1)["applied_index"] >= 22)  # type: ignore[index]
        assert cluster.stop(1) == 0
        raft = cluster.nodes[1].data_dir / "raft"
        for f in raft.iterdir():
            f.unlink()
        result = _start_alone(cluster, 1)
        assert result.returncode == 3, result.stderr[-2000:]
        assert "refusing to start" in result.stderr and "ahead of" in result.stderr
        assert "Traceback" not in result.stderr


def test_corrupt_journal_refuses_to_start(tmp_path: Path) -> None:
    with running_cluster(tmp_path) as cluster:
        assert http_json(cluster.urls[0] + "/v1/queues/q", "PUT", {})[0] == 201
        _write(cluster, "q", 30)
        assert cluster.stop(2) == 0
        journal = cluster.nodes[2].data_dir / "raft" / "journal"
        data = bytearray(journal.read_bytes())
        data[len(data) // 2] ^= 0x40  # a bit flip in the middle: not a torn tail
        journal.write_bytes(bytes(data))
        result = _start_alone(cluster, 2)
        assert result.returncode == 3, result.stderr[-2000:]
        assert "refusing to start" in result.stderr and "journal" in result.stderr
        assert "Traceback" not in result.stderr


def test_a_node_with_the_wrong_cluster_secret_cannot_take_part(tmp_path: Path) -> None:
    """Raft traffic is authenticated with the cluster secret: a member with another secret learns nothing."""
    cluster = Cluster(tmp_path, 3)
    try:
        cluster.start(0)
        cluster.start(1)
        impostor = [arg if arg != SECRET else "another-secret-0123456789" for arg in cluster.command(2)]
        log = open(cluster.nodes[2].log_path, "ab")  # noqa: SIM115 (the child owns it)
        try:
            cluster.nodes[2].proc = subprocess.Popen(impostor, stdout=log, stderr=subprocess.STDOUT)
        finally:
            log.close()
        leader = cluster.wait_for_leader(among=[0, 1])
        assert http_json(cluster.urls[leader] + "/v1/queues/secret", "PUT", {})[0] == 201
        # The two real members commit without it; the impostor never learns a leader or any state.
        wait_until("the impostor to answer HTTP", lambda: cluster.status(2) is not None)
        st = cluster.status(2)
        assert st is not None and st["leader_id"] is None and st["applied_index"] <= 1, st
        assert http_json(cluster.urls[2] + "/readyz")[0] == 503
        assert http_json(cluster.urls[2] + "/v1/queues?consistency=local")[1] == {"queues": []}
    finally:
        cluster.close()
