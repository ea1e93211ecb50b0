"""Cluster behaviour with real node processes on 127.0.0.1."""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from tests.cluster.harness import Cluster, http_json, running_cluster, wait_until

pytestmark = pytest.mark.cluster


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    with running_cluster(tmp_path) as c:
        yield c


def enqueue_with_retry(urls: list[str], queue: str, body: str, key: str, deadline_s: float = 30.0) -> dict[str, Any]:
    """Enqueues with an idempotency key, retrying any node until a 2xx (the key makes retries safe)."""
    end = time.monotonic() + deadline_s
    attempt = 0
    while True:
        url = urls[attempt % len(urls)]
        attempt += 1
        try:
            code, resp = http_json(f"{url}/v1/queues/{queue}/messages", "POST", {"body": body, "idempotency_key": key})
            if code in (200, 201):
                assert isinstance(resp, dict)
                return resp
            assert code in (503, 429), (code, resp)
        except OSError:
            pass
        if time.monotonic() > end:
            raise AssertionError(f"enqueue {key} did not succeed within {deadline_s} s")
        time.sleep(0.05)


def drain(url: str, queue: str) -> list[dict[str, Any]]:
    """Receives and acks until the queue reports nothing ready, leased or delayed."""
    got: list[dict[str, Any]] = []
    while True:
        code, resp = http_json(f"{url}/v1/queues/{queue}/receive", "POST", {"max_messages": 100})
        assert code == 200, resp
        msgs = resp["messages"]
        if not msgs:
            code, info = http_json(f"{url}/v1/queues/{queue}")
            counts = info["counts"]
            assert counts["leased"] == 0 and counts["delayed"] == 0 and counts["ready"] == 0, counts
            return got
        got.extend(msgs)
        code, acks = http_json(f"{url}/v1/queues/{queue}/ack", "POST", {"receipts": [m["receipt"] for m in msgs]})
        assert code == 200 and all(r["outcome"] == "acked" for r in acks["results"]), acks


def test_any_node_serves_writes_and_linearizable_reads(cluster: Cluster) -> None:
    leader = cluster.wait_for_leader()
    f1, f2 = [i for i in range(3) if i != leader]
    assert http_json(cluster.urls[f1] + "/v1/queues/orders", "PUT", {"visibility_timeout_s": 30})[0] == 201
    assert http_json(cluster.urls[f2] + "/v1/queues/orders", "PUT", {"visibility_timeout_s": 30})[0] == 200
    code, sent = http_json(cluster.urls[f2] + "/v1/queues/orders/messages", "POST", {"body": "o-1"})
    assert code == 201 and sent["commit_index"] > 0
    # A read on another follower right after the write sees it (reads go through the log by default).
    code, info = http_json(cluster.urls[f1] + "/v1/queues/orders")
    assert code == 200 and info["counts"]["ready"] == 1
    code, got = http_json(cluster.urls[leader] + "/v1/queues/orders/receive", "POST", {"max_messages": 10})
    assert [m["body"] for m in got["messages"]] == ["o-1"]
    receipt = got["messages"][0]["receipt"]
    code, acked = http_json(cluster.urls[f1] + "/v1/queues/orders/ack", "POST", {"receipts": [receipt]})
    assert acked["results"] == [{"receipt": receipt, "outcome": "acked"}]
    for url in cluster.urls:
        code, info = http_json(url + "/v1/queues/orders")
        assert info["counts"]["acked_total"] == 1 and info["counts"]["ready"] == 0


def test_redirect_on_request(cluster: Cluster) -> None:
    leader = cluster.wait_for_leader()
    follower = (leader + 1) % 3
    import urllib.request

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args: Any, **kwargs: Any) -> None:
            return None

    opener = urllib.request.build_opener(NoRedirect)
    req = urllib.request.Request(cluster.urls[follower] + "/v1/queues?redirect=true")
    with pytest.raises(urllib.error.HTTPError) as err:
        opener.open(req, timeout=5)
    err.value.close()
    assert err.value.code == 307
    assert err.value.headers["Location"] == cluster.urls[leader] + "/v1/queues?redirect=true"


def test_leader_kill_fails_over_quickly_and_loses_nothing(cluster: Cluster) -> None:
    urls = cluster.urls
    assert http_json(urls[0] + "/v1/queues/pay", "PUT", {})[0] in (200, 201)
    with ThreadPoolExecutor(8) as pool:
        acked = list(pool.map(lambda i: enqueue_with_retry(urls, "pay", f"p{i}", f"k{i}"), range(200)))
    leader = cluster.wait_for_leader()
    cluster.kill(leader)
    survivors = [u for i, u in enumerate(urls) if i != leader]
    killed_at = time.monotonic()
    first = enqueue_with_retry(survivors, "pay", "after-kill", "k-after", deadline_s=15)
    failover_s = time.monotonic() - killed_at
    assert failover_s < 5.0, f"first write after the leader died took {failover_s:.2f} s"
    cluster.start(leader)
    cluster.wait_ready()
    got = drain(urls[leader], "pay")
    ids = [m["message_id"] for m in got]
    assert len(ids) == len(set(ids)), "a message was delivered twice"
    assert set(ids) == {a["message_id"] for a in acked} | {first["message_id"]}


def test_all_nodes_killed_keep_every_acknowledged_message(cluster: Cluster) -> None:
    urls = cluster.urls
    assert http_json(urls[1] + "/v1/queues/settle", "PUT", {})[0] in (200, 201)
    with ThreadPoolExecutor(16) as pool:
        acked = list(pool.map(lambda i: enqueue_with_retry(urls, "settle", f"s{i}", f"k{i}"), range(300)))
    for i in range(3):
        cluster.kill(i)
    cluster.start_all()
    cluster.wait_ready()
    got = drain(urls[2], "settle")
    assert sorted(m["message_id"] for m in got) == sorted(a["message_id"] for a in acked)
    assert sorted(m["body"] for m in got) == sorted(f"s{i}" for i in range(300))


def test_expired_lease_redelivers_and_old_receipt_is_stale(cluster: Cluster) -> None:
    url = cluster.urls[0]
    assert http_json(url + "/v1/queues/lease", "PUT", {"visibility_timeout_s": 0.3})[0] == 201
    assert http_json(url + "/v1/queues/lease/messages", "POST", {"body": "x"})[0] == 201
    first = http_json(url + "/v1/queues/lease/receive", "POST", {})[1]["messages"][0]
    assert first["delivery_count"] == 1

    def redelivered() -> dict[str, Any] | None:
        msgs = http_json(cluster.urls[1] + "/v1/queues/lease/receive", "POST", {"wait_s": 1})[1]["messages"]
        return msgs[0] if msgs else None

    second = wait_until("the lease to expire and the message to come back", redelivered, timeout=10)
    assert second["message_id"] == first["message_id"] and second["delivery_count"] == 2
    stale = http_json(url + "/v1/queues/lease/ack", "POST", {"receipts": [first["receipt"]]})[1]
    assert stale["results"][0]["outcome"] == "stale"
    ok = http_json(url + "/v1/queues/lease/ack", "POST", {"receipts": [second["receipt"]]})[1]
    assert ok["results"][0]["outcome"] == "acked"


def test_long_poll_returns_when_a_message_arrives(cluster: Cluster) -> None:
    urls = cluster.urls
    assert http_json(urls[0] + "/v1/queues/lp", "PUT", {})[0] == 201
    with ThreadPoolExecutor(1) as pool:
        started = time.monotonic()
        waiting = pool.submit(http_json, urls[1] + "/v1/queues/lp/receive", "POST", {"wait_s": 20}, 30.0)
        # The poll is parked: it has not answered yet.
        wait_until("the long poll to be parked", lambda: not waiting.done() and time.monotonic() - started > 0.3)
        assert http_json(urls[2] + "/v1/queues/lp/messages", "POST", {"body": "wake"})[0] == 201
        code, resp = waiting.result(timeout=15)
    assert code == 200 and [m["body"] for m in resp["messages"]] == ["wake"]
    assert time.monotonic() - started < 15


def test_minority_commits_nothing_and_says_so(cluster: Cluster) -> None:
    url = cluster.urls[0]
    assert http_json(url + "/v1/queues/q", "PUT", {})[0] == 201
    cluster.kill(1)
    cluster.kill(2)
    # The lone survivor must not acknowledge a write: without a majority nothing commits.
    for i in range(5):
        code, body = http_json(url + "/v1/queues/q/messages", "POST", {"body": f"m{i}", "idempotency_key": f"k{i}"}, 20)
        assert code == 503, (code, body)
        assert body["code"] in ("no_leader", "outcome_unknown", "overloaded", "not_leader"), body
    cluster.start(1)
    cluster.start(2)
    cluster.wait_ready()
    info = http_json(url + "/v1/queues/q")[1]
    # Writes whose outcome was unknown may commit after healing; none was acknowledged, and a retry with the same
    # key can never create a second copy.
    for i in range(5):
        enqueue_with_retry(cluster.urls, "q", f"m{i}", f"k{i}")
    assert http_json(url + "/v1/queues/q")[1]["counts"]["ready"] == 5
    assert info["counts"]["ready"] <= 5


def test_bad_input_is_refused_and_the_node_keeps_serving(cluster: Cluster) -> None:
    import urllib.request

    url = cluster.urls[0]
    for path, body in [
        ("/v1/queues/q", b"{not json"),
        ("/v1/queues/bad%20name", b"{}"),
        ("/v1/queues/q", b'{"visibility_timeout_s": -1}'),
        ("/v1/queues/q", b'{"max_length": "ten"}'),
    ]:
        req = urllib.request.Request(url + path, data=body, method="PUT")
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(req, timeout=5)
        assert err.value.code == 400
        assert err.value.headers["Content-Type"].startswith("application/problem+json")
        with err.value:
            assert b"Traceback" not in err.value.read()
    assert http_json(url + "/v1/queues")[1] == {"queues": []}
    assert http_json(url + "/healthz")[0] == 200


def test_every_replica_applies_the_same_state(cluster: Cluster) -> None:
    """hashicorp/raft's EnsureSame, from outside: equal applied index, equal state digest on every node."""
    urls = cluster.urls
    assert http_json(urls[0] + "/v1/queues/same", "PUT", {"visibility_timeout_s": 5})[0] == 201
    with ThreadPoolExecutor(6) as pool:
        list(pool.map(lambda i: enqueue_with_retry(urls, "same", f"b{i}", f"k{i}"), range(60)))
    got = http_json(urls[1] + "/v1/queues/same/receive", "POST", {"max_messages": 20})[1]["messages"]
    http_json(urls[2] + "/v1/queues/same/ack", "POST", {"receipts": [m["receipt"] for m in got[:10]]})

    def same() -> list[dict[str, Any]] | None:
        digests = [http_json(u + "/v1/cluster/digest")[1] for u in urls]
        first = digests[0]
        ok = all(d["applied_index"] == first["applied_index"] and d["digest"] == first["digest"] for d in digests)
        return digests if ok else None

    digests = wait_until("every node to report the same applied index and digest", same, timeout=20)
    assert digests[0]["keys"] > 60
