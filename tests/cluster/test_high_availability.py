"""CheckQuorum and PreVote, end to end: 3 real nodes, one Toxiproxy proxy per node pair (as in test_partition.py).

- A leader cut off from both peers refuses writes with ``503 no_leader`` within one election timeout of the cut
  (CheckQuorum plus the fast refusal), instead of holding them to the request timeout.
- A follower cut off for several election timeouts, then reconnected, leaves the term and the leader as they
  were (PreVote: it never raised its term while it was alone).

Every node process is started by the fixture and killed by PID in its ``finally`` (``Cluster.close``), also when a
test fails. The proxies run in this process (``ServerThread``) on 127.0.0.1, on ports the OS hands out.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from chaos.cluster import Cluster, http_json
from chaos.network import RaftNetwork
from tests.cluster.harness import partitionable_cluster

pytestmark = pytest.mark.cluster

#: The nodes' election timeout bounds (the defaults: raft_queue/config.py), passed explicitly so the bound is stated.
ELECTION_MIN_S = 0.4
ELECTION_MAX_S = 1.2


@pytest.fixture
def net_cluster(tmp_path: Path) -> Iterator[tuple[Cluster, RaftNetwork]]:
    timeouts = ["--election-timeout-min-s", str(ELECTION_MIN_S), "--election-timeout-max-s", str(ELECTION_MAX_S)]
    with partitionable_cluster(tmp_path, 3, timeouts) as cluster_and_network:
        yield cluster_and_network


def _post(url: str, key: str, timeout: float) -> tuple[int | None, str]:
    """One write; (HTTP status, problem code) or (None, what went wrong) when no answer came within ``timeout``."""
    try:
        code, body = http_json(url + "/v1/queues/ha/messages", "POST", {"body": key, "idempotency_key": key}, timeout)
    except OSError as exc:  # TimeoutError included
        return None, f"no answer ({exc.__class__.__name__})"
    problem = body.get("code", "") if isinstance(body, dict) else ""
    return code, str(problem or "ok")


def test_cut_off_leader_answers_no_leader_within_one_election_timeout(
    net_cluster: tuple[Cluster, RaftNetwork],
) -> None:
    cluster, network = net_cluster
    assert http_json(cluster.urls[0] + "/v1/queues/ha", "PUT", {})[0] == 201
    old = cluster.wait_for_leader()
    url = cluster.urls[old]
    assert _post(url, "before", 5.0)[0] == 201

    cut_at = time.monotonic()
    network.isolate(cluster.nodes[old].node_id)
    deadline = cut_at + ELECTION_MAX_S
    # (sent at, answered at, status, problem code), seconds after the cut; writes go one after another
    answers: list[tuple[float, float, int | None, str]] = []
    i = 0
    while (remaining := deadline - time.monotonic()) > 0:
        sent = time.monotonic() - cut_at
        code, problem = _post(url, f"cut-{i}", remaining + 0.05)
        answers.append((round(sent, 3), round(time.monotonic() - cut_at, 3), code, problem))
        i += 1
        if code == 503 and problem == "no_leader":
            break
    refused = [a for a in answers if a[2] == 503 and a[3] == "no_leader"]
    assert refused, f"no 503 no_leader within {ELECTION_MAX_S} s of the cut; answers: {answers}; {cluster.describe()}"
    assert refused[0][1] <= ELECTION_MAX_S, answers
    # Nothing the cut-off leader was asked was held past the bound.
    assert all(a[1] <= ELECTION_MAX_S + 0.1 for a in answers), answers
    print(f"cut-off leader answers (sent s, answered s, status, code): {answers}")


def _view(cluster: Cluster, i: int) -> tuple[Any, Any]:
    st = cluster.status(i)
    assert st is not None, f"node {i} did not answer /v1/cluster; {cluster.describe()}"
    return st["term"], st["leader_id"]


def test_isolated_follower_rejoins_without_changing_term_or_leader(net_cluster: tuple[Cluster, RaftNetwork]) -> None:
    cluster, network = net_cluster
    assert http_json(cluster.urls[0] + "/v1/queues/ha", "PUT", {})[0] == 201
    leader = cluster.wait_for_leader()
    term, leader_id = _view(cluster, leader)
    assert leader_id == cluster.nodes[leader].node_id
    follower = next(i for i in range(3) if i != leader)

    network.isolate(cluster.nodes[follower].node_id)
    time.sleep(5 * ELECTION_MAX_S)
    # Meanwhile the majority kept its leader and term.
    assert _view(cluster, leader) == (term, leader_id), cluster.describe()
    network.heal()

    # Time for the rejoined follower to reconnect and, without PreVote, to campaign with the term it raised alone.
    time.sleep(4 * ELECTION_MAX_S)
    views = {cluster.nodes[i].node_id: _view(cluster, i) for i in range(3)}
    assert all(v == (term, leader_id) for v in views.values()), (
        f"before the isolation: term {term}, leader {leader_id}; after rejoining: {views}; {cluster.describe()}"
    )
    # And the cluster still commits through the same leader.
    code, problem = _post(cluster.urls[follower], "after-rejoin", 5.0)
    assert code == 201, (code, problem)
