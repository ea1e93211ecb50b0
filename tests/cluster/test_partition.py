"""Network partitions through one Toxiproxy proxy per node pair: a partition really partitions."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from chaos.cluster import Cluster, http_json, wait_until
from chaos.network import RaftNetwork
from tests.cluster.harness import partitionable_cluster

pytestmark = pytest.mark.cluster


@pytest.fixture
def net_cluster(tmp_path: Path) -> Iterator[tuple[Cluster, RaftNetwork]]:
    with partitionable_cluster(tmp_path) as cluster_and_network:
        yield cluster_and_network


def test_isolated_leader_commits_nothing_and_the_majority_moves_on(net_cluster: tuple[Cluster, RaftNetwork]) -> None:
    cluster, network = net_cluster
    urls = cluster.urls
    assert http_json(urls[0] + "/v1/queues/p", "PUT", {})[0] == 201
    old = cluster.wait_for_leader()
    majority = [i for i in range(3) if i != old]
    network.isolate(cluster.nodes[old].node_id)
    # The majority elects a new leader and commits.
    new = cluster.wait_for_leader(among=majority, timeout=20)
    code, body = http_json(urls[new] + "/v1/queues/p/messages", "POST", {"body": "majority", "idempotency_key": "m"})
    assert code == 201, body
    # The isolated old leader acknowledges nothing: every write to it fails or is reported unknown.
    for i in range(3):
        code, body = http_json(
            urls[old] + "/v1/queues/p/messages", "POST", {"body": f"minority-{i}", "idempotency_key": f"x{i}"}, 20
        )
        assert code == 503, (code, body)
    # Heal: everyone converges on the majority's history; the minority's writes never committed.
    network.heal()

    def converged() -> bool:
        views = [http_json(u + "/v1/queues/p?consistency=local")[1]["counts"] for u in urls]
        return all(v == views[0] for v in views) and views[0]["enqueued_total"] >= 1

    wait_until("every node to hold the same queue state after healing", converged, timeout=30)
    counts = http_json(urls[old] + "/v1/queues/p")[1]["counts"]
    # Unknown-outcome writes may commit after healing (they were never acknowledged); 'majority' must be there.
    assert 1 <= counts["enqueued_total"] <= 4
