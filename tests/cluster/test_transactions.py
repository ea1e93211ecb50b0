"""Transactions on a real 3-node cluster, while the leader is killed and client timeouts force retries.

- A consume-transform-produce pipeline: every input message of queue ``src`` is received, and its ack and the
  transformed output (to ``dst``) commit as one transaction whose ID is derived from the input message. Retries
  reuse the transaction ID (and a receive's attempt ID), on another node. At the end ``dst`` holds exactly one
  output per input and ``src`` is empty.
- Producers retrying transactions across leader kills: exactly one message per transaction ID.
- Interactive transactions survive every node being killed: staged messages are never visible; an uncommitted
  one ends aborted at its timeout, a committed one stays committed, exactly once.

The requests here are plain HTTP with a short timeout, so that a timeout is an unknown outcome the test must
resolve by retrying, as any client would. The counts of retries and unknown outcomes are printed (``-s``).
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.cluster.harness import Cluster, http_json, running_cluster, wait_until
from tests.cluster.test_cluster import drain

pytestmark = pytest.mark.cluster

#: Short enough that requests in flight during a leader kill time out: the outcome is then unknown.
REQUEST_TIMEOUT_S = 1.5
#: Each pipeline worker's pause between messages: 60 inputs over 3 workers last about 6 s without faults.
PIPELINE_PACE_S = 0.3


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    with running_cluster(tmp_path) as c:
        yield c


@dataclass
class Stats:
    lock: threading.Lock = field(default_factory=threading.Lock)
    counts: Counter[str] = field(default_factory=Counter)

    def add(self, what: str) -> None:
        with self.lock:
            self.counts[what] += 1


def call(url: str, method: str, body: Any, stats: Stats) -> tuple[int | None, Any]:
    """One request; (None, None) when its outcome is unknown (timeout, connection dropped or refused)."""
    try:
        code, resp = http_json(url, method, body, timeout=REQUEST_TIMEOUT_S)
    except OSError:
        stats.add("unknown")
        return None, None
    if code == 503:
        stats.add("unknown" if isinstance(resp, dict) and resp.get("outcome") == "unknown" else "unavailable")
        return None, resp
    return code, resp


class LeaderKiller(threading.Thread):
    """kill -9 the leader every ``every_s``, restart it ``down_s`` later, ``kills`` times."""

    def __init__(self, cluster: Cluster, kills: int, every_s: float = 1.5, down_s: float = 1.0) -> None:
        super().__init__(name="leader-killer", daemon=True)
        self.cluster, self.kills, self.every_s, self.down_s = cluster, kills, every_s, down_s
        self.done = 0
        self.stop = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            while self.done < self.kills and not self.stop.wait(self.every_s):
                leader = self.cluster.leader()
                if leader is None:
                    continue
                self.cluster.kill(leader)
                self.done += 1
                self.stop.wait(self.down_s)
                self.cluster.start(leader)
        except BaseException as exc:  # reported by the test
            self.error = exc


def transform(body: str) -> str:
    return f"settled:{body}"


def test_consume_transform_produce_is_exactly_once_across_leader_kills(cluster: Cluster) -> None:
    urls = cluster.urls
    inputs = 60
    for q, vt in (("src", 4), ("dst", 30)):
        assert http_json(urls[0] + f"/v1/queues/{q}", "PUT", {"visibility_timeout_s": vt})[0] == 201
    for k in range(inputs):
        code, _ = http_json(
            urls[k % 3] + "/v1/queues/src/messages", "POST", {"body": f"order-{k}", "idempotency_key": f"order-{k}"}
        )
        assert code == 201
    pipeline = _Pipeline(urls)
    killer = LeaderKiller(cluster, kills=4, every_s=1.0, down_s=0.8)
    workers = [threading.Thread(target=pipeline.worker, args=(w,), daemon=True) for w in range(3)]
    killer.start()
    for t in workers:
        t.start()

    def all_moved() -> bool:
        try:
            code, info = http_json(urls[0] + "/v1/queues/src", timeout=2.0)
        except OSError:
            return False
        counts = info["counts"] if code == 200 else {}
        return code == 200 and counts["acked_total"] == inputs and counts["ready"] + counts["leased"] == 0

    try:
        wait_until("every input to be transformed", all_moved, timeout=120, interval=0.25)
    finally:
        pipeline.finished.set()
        killer.stop.set()
        killer.join(30)
        for t in workers:
            t.join(30)
    assert killer.error is None and killer.done >= 3, (killer.error, killer.done)
    assert pipeline.failures == []
    cluster.wait_ready(timeout=60)
    outputs = Counter(m["body"] for m in drain(urls[0], "dst"))
    assert outputs == Counter({transform(f"order-{k}"): 1 for k in range(inputs)})
    print(f"\npipeline: {inputs} inputs, {killer.done} leader kills, {dict(pipeline.stats.counts)}")


class _Pipeline:
    """The consume-transform-produce workers: each receives one message of ``src`` and commits, in one
    transaction, its ack and the enqueue of its transform to ``dst``; until ``finished``."""

    def __init__(self, urls: list[str]) -> None:
        self.urls = urls
        self.stats = Stats()
        self.finished = threading.Event()
        self.failures: list[str] = []

    def worker(self, w: int) -> None:
        urls, stats, finished = self.urls, self.stats, self.finished
        node = w
        while not finished.is_set():
            attempt = uuid.uuid4().hex
            while not finished.is_set():  # the same attempt ID until the receive's outcome is known
                code, resp = call(
                    urls[node % 3] + "/v1/queues/src/receive",
                    "POST",
                    {"max_messages": 1, "receive_attempt_id": attempt},
                    stats,
                )
                node += 1
                if code == 200:
                    break
                if code is not None and code not in (429, 503):
                    self.failures.append(f"receive: {code} {resp}")
                    return
                stats.add("retry")
                time.sleep(0.05)
            else:
                return
            for message in resp["messages"]:
                self.settle(message, node)
            # Paced, so that the pipeline runs for several seconds and the leader kills land in the middle of it.
            time.sleep(PIPELINE_PACE_S)

    def settle(self, message: dict[str, Any], first_node: int) -> None:
        """Commits ack(src) + enqueue(dst) as one transaction, retrying under the same ID until decided."""
        urls, stats = self.urls, self.stats
        txid = f"xform-{message['message_id']}"
        body = {
            "transaction_id": txid,
            "operations": [
                {"op": "ack", "queue": "src", "receipts": [message["receipt"]]},
                {"op": "enqueue", "queue": "dst", "messages": [{"body": transform(message["body"])}]},
            ],
        }
        node = first_node
        while not self.finished.is_set():
            code, resp = call(urls[node % 3] + "/v1/transactions", "POST", body, stats)
            node += 1
            if code == 200:
                stats.add("committed_duplicate" if resp["duplicate"] else "committed")
                return
            if code == 409 and resp.get("code") == "transaction_aborted":
                stats.add("aborted_stale")  # the lease ran out before the commit: the message comes back
                return
            if code == 409 and resp.get("code") == "transaction_conflict":
                # Another worker got the message again (our lease ran out) and committed this ID first.
                got = call(urls[node % 3] + f"/v1/transactions/{txid}", "GET", None, stats)
                if got[0] == 200 and got[1]["status"] == "committed":
                    stats.add("committed_by_other")
                    return
                continue
            if code is not None and code not in (429, 503):
                self.failures.append(f"transaction {txid}: {code} {resp}")
                return
            stats.add("retry")
            time.sleep(0.05)


def test_transaction_ids_make_retried_producers_exactly_once(cluster: Cluster) -> None:
    urls = cluster.urls
    assert http_json(urls[0] + "/v1/queues/payments", "PUT", {})[0] == 201
    stats = Stats()
    failures: list[str] = []

    def producer(p: int) -> None:
        for k in range(15):
            txid = f"pay-{p}-{k}"
            body = {
                "transaction_id": txid,
                "operations": [{"op": "enqueue", "queue": "payments", "messages": [{"body": txid}]}],
            }
            node = p + k
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                code, resp = call(urls[node % 3] + "/v1/transactions", "POST", body, stats)
                node += 1
                if code == 200:
                    break
                if code is not None and code not in (429, 503):
                    failures.append(f"{txid}: {code} {resp}")
                    return
                stats.add("retry")
                time.sleep(0.05)
            else:
                failures.append(f"{txid}: no answer within 60 s")
                return
            time.sleep(PIPELINE_PACE_S)  # paced like the pipeline, so that the kills land while producing

    killer = LeaderKiller(cluster, kills=3, every_s=1.0, down_s=0.8)
    producers = [threading.Thread(target=producer, args=(p,), daemon=True) for p in range(4)]
    killer.start()
    for t in producers:
        t.start()
    for t in producers:
        t.join(120)
    killer.stop.set()
    killer.join(30)
    assert killer.error is None and killer.done >= 2 and failures == [], (killer.error, killer.done, failures)
    cluster.wait_ready(timeout=60)
    bodies = Counter(m["body"] for m in drain(urls[0], "payments"))
    assert bodies == Counter({f"pay-{p}-{k}": 1 for p in range(4) for k in range(15)})
    print(f"\nproducers: 60 transactions, {killer.done} leader kills, {dict(stats.counts)}")


def _restart_all(cluster: Cluster) -> None:
    for i in range(cluster.size):
        cluster.kill(i)
    cluster.start_all()
    cluster.wait_ready(timeout=60)


def _visible(url: str, queue: str) -> int:
    code, info = http_json(url + f"/v1/queues/{queue}")
    assert code == 200, info
    counts = info["counts"]
    return int(counts["ready"] + counts["leased"] + counts["delayed"])


def test_interactive_transactions_survive_every_node_being_killed(cluster: Cluster) -> None:
    urls = cluster.urls
    assert http_json(urls[0] + "/v1/queues/ledger", "PUT", {})[0] == 201
    staged = {
        "stage_seq": 1,
        "operations": [{"op": "enqueue", "queue": "ledger", "messages": [{"body": "a"}, {"body": "b"}]}],
    }

    # T1 is staged and never committed; T2 is staged and committed before the crash.
    for txid, timeout_s in (("t1", 8), ("t2", 60)):
        code, begun = http_json(urls[1] + f"/v1/transactions/{txid}", "PUT", {"timeout_s": timeout_s})
        assert code == 201 and begun["status"] == "pending", begun
        code, resp = http_json(urls[2] + f"/v1/transactions/{txid}/operations", "POST", staged)
        assert code == 200 and resp["status"] == "pending" and resp["staged_ops"] == 1, resp
    assert _visible(urls[0], "ledger") == 0  # staged messages are invisible
    code, committed = http_json(urls[0] + "/v1/transactions/t2/commit", "POST", {})
    assert code == 200 and committed["status"] == "committed", committed

    _restart_all(cluster)

    code, t2 = http_json(urls[2] + "/v1/transactions/t2")
    assert code == 200 and t2["status"] == "committed" and t2["decided_index"] == committed["decided_index"]
    code, t1 = http_json(urls[1] + "/v1/transactions/t1")
    assert code == 200 and t1["status"] in ("pending", "aborted"), t1
    assert _visible(urls[0], "ledger") == 2  # t2's two messages, once; none of t1's

    def t1_aborted() -> dict[str, Any] | None:
        code, resp = http_json(urls[0] + "/v1/transactions/t1")
        return resp if code == 200 and resp["status"] == "aborted" else None

    aborted = wait_until("t1 to abort at its timeout", t1_aborted, timeout=30, interval=0.25)
    assert aborted["reason"] == "timeout"
    code, late = http_json(urls[1] + "/v1/transactions/t1/commit", "POST", {})
    assert code == 409 and late["code"] == "transaction_aborted", late
    assert sorted(m["body"] for m in drain(urls[0], "ledger")) == ["a", "b"]
