"""Failover time: kill -9 the leader repeatedly and measure how long until a write succeeds again.

For each round: wait until every node is ready, start writing (one request at a time, each with its own
idempotency key, alternating over the survivors), kill -9 the leader, and record the time from the kill to the
first 2xx of a request *sent after* the kill (so it was committed under the new leader). Then restart the killed
node and wait until it is ready again.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from chaos.cluster import Cluster, http_json


@dataclass(frozen=True)
class FailoverRound:
    killed: str
    new_leader: str
    seconds: float


def _first_write_after(cluster: Cluster, survivors: list[int], since: float, tag: str, limit_s: float) -> float:
    n = 0
    while time.monotonic() - since < limit_s:
        i = survivors[n % len(survivors)]
        n += 1
        body = {"body": tag, "idempotency_key": f"{tag}-{n}"}
        try:
            code, _ = http_json(cluster.nodes[i].url + "/v1/queues/failover/messages", "POST", body, timeout=2.0)
        except OSError:
            continue
        if code in (200, 201):
            return time.monotonic() - since
    raise RuntimeError(f"no write succeeded within {limit_s} s of the leader's death")


def measure(root: Path, kills: int, size: int = 3) -> list[FailoverRound]:
    cluster = Cluster(root, size)
    rounds: list[FailoverRound] = []
    try:
        cluster.start_all()
        cluster.wait_ready()
        code, _ = http_json(cluster.urls[0] + "/v1/queues/failover", "PUT", {})
        assert code in (200, 201), code
        for k in range(kills):
            leader = cluster.wait_ready()
            survivors = [i for i in range(size) if i != leader]
            cluster.kill(leader)
            seconds = _first_write_after(cluster, survivors, time.monotonic(), f"round{k}", limit_s=30)
            new_leader = cluster.wait_for_leader(among=survivors)
            rounds.append(FailoverRound(cluster.nodes[leader].node_id, cluster.nodes[new_leader].node_id, seconds))
            print(
                f"round {k + 1}: killed {rounds[-1].killed}, {rounds[-1].new_leader} took over, "
                f"first write ok after {seconds:.3f} s",
                flush=True,
            )
            cluster.start(leader)
        return rounds
    finally:
        cluster.close()


def run(kills: int, size: int) -> int:
    with tempfile.TemporaryDirectory(prefix="raft-queue-failover-") as tmp:
        rounds = measure(Path(tmp), kills, size)
    times = [r.seconds for r in rounds]
    print(
        f"failover over {len(times)} leader kills (kill -9, {size} nodes): "
        f"median {statistics.median(times):.3f} s, max {max(times):.3f} s, min {min(times):.3f} s"
    )
    return 0
