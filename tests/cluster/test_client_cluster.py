"""The Python client against a real cluster: leader finding, retries and exactly-once enqueue across a leader kill."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from raft_queue_client import Client, RetryEvent
from tests.cluster.harness import running_cluster, wait_until

pytestmark = pytest.mark.cluster


def test_producers_retrying_across_a_leader_kill_enqueue_each_key_once(tmp_path: Path) -> None:
    retries: list[RetryEvent] = []
    with (
        running_cluster(tmp_path) as cluster,
        Client(cluster.urls, timeout_s=3.0, max_attempts=60, backoff_max_s=0.5, on_retry=retries.append) as client,
    ):
        client.create_queue("payments", visibility_timeout_s=60)
        done = threading.Event()
        sent: list[str] = []
        lock = threading.Lock()

        def produce(worker: int) -> None:
            for n in range(60):
                key = f"pay-{worker}-{n}"
                result = client.enqueue("payments", f"instruction {key}", idempotency_key=key)
                assert result.idempotency_key == key
                with lock:
                    sent.append(key)

        with ThreadPoolExecutor(4) as pool:
            futures = [pool.submit(produce, w) for w in range(4)]
            wait_until("some writes", lambda: len(sent) >= 40)
            leader = cluster.wait_for_leader()
            cluster.kill(leader)
            for f in futures:
                f.result(timeout=120)
            done.set()
        cluster.start(leader)
        cluster.wait_ready()
        bodies: list[str] = []
        while True:
            batch = client.receive("payments", max_messages=100)
            if not batch:
                break
            bodies.extend(m.body for m in batch)
            assert all(r.outcome == "acked" for r in client.ack("payments", batch))
        assert len(sent) == 240
        assert sorted(bodies) == sorted(f"instruction {k}" for k in sent), "lost or duplicated instructions"
        info = client.get_queue("payments")
        assert info.counts.enqueued_total == 240 and info.counts.acked_total == 240
