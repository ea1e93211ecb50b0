"""The blocking ``Client``: from a plain function, from another thread, and from inside an event loop."""

from __future__ import annotations

import asyncio
import threading

import pytest

from raft_queue.client import (
    Client,
    ClientClosedError,
    OutcomeUnknownError,
    QueueNotFound,
    RetryEvent,
)

from .fake_server import drop, no_leader, ok, problem, redirect, threaded_fake_nodes
from .support import enqueued, queue_info


def fast_sync_client(*urls: str, events: list[RetryEvent] | None = None, max_attempts: int = 4) -> Client:
    return Client(
        urls,
        timeout_s=5.0,
        max_attempts=max_attempts,
        backoff_initial_s=0.001,
        backoff_max_s=0.005,
        on_retry=None if events is None else events.append,
    )


def test_the_sync_client_from_a_plain_function() -> None:
    events: list[RetryEvent] = []
    with threaded_fake_nodes(3) as (a, b, c), fast_sync_client(a.url, b.url, c.url, events=events) as client:
        a.push(no_leader())
        b.push(redirect(c))
        c.push(ok(enqueued("m-3", 3), status=201), problem(404, "queue_not_found"))
        result = client.enqueue("orders", "hello")
        assert (result.message_id, result.seq) == ("m-3", 3)
        assert [e.node_url for e in events] == [a.url]
        with pytest.raises(QueueNotFound):
            client.get_queue("missing")
        assert c.requests[1].path == "/v1/queues/missing"


def test_the_sync_client_from_another_thread() -> None:
    results: list[object] = []
    with threaded_fake_nodes(2) as (a, b), fast_sync_client(a.url, b.url) as client:
        a.push(drop())
        b.push(ok(enqueued(duplicate=True)), ok(queue_info()))

        def work() -> None:
            try:
                results.append(client.enqueue("orders", "hello"))
                results.append(client.get_queue("orders"))
            except BaseException as exc:  # handed to the test thread
                results.append(exc)

        worker = threading.Thread(target=work)
        worker.start()
        worker.join(timeout=20)
        assert not worker.is_alive()
    assert len(results) == 2, results
    assert not any(isinstance(r, BaseException) for r in results), results
    assert a.requests[0].json == b.requests[0].json


def test_the_sync_client_inside_a_running_event_loop() -> None:
    async def main(client: Client) -> str:
        return client.get_queue("orders").name

    with threaded_fake_nodes(1) as (a,), fast_sync_client(a.url) as client:
        a.push(ok(queue_info()))
        assert asyncio.run(main(client)) == "orders"


def test_the_sync_client_raises_the_same_errors() -> None:
    with threaded_fake_nodes(1) as (a,), fast_sync_client(a.url, max_attempts=2) as client:
        a.fallback = drop()
        with pytest.raises(OutcomeUnknownError) as caught:
            client.enqueue("orders", "hello", idempotency_key="k-1")
        assert caught.value.idempotency_key == "k-1"


def test_close_stops_the_thread_and_later_calls_fail() -> None:
    with threaded_fake_nodes(1) as (a,):
        client = fast_sync_client(a.url)
        a.push(ok(queue_info()))
        client.get_queue("orders")
        thread = client._thread
        client.close()
        client.close()  # idempotent
        assert client.closed
        assert not thread.is_alive()
        with pytest.raises(ClientClosedError):
            client.get_queue("orders")
        assert len(a.requests) == 1


def test_close_without_any_call() -> None:
    with fast_sync_client("http://127.0.0.1:9") as client:
        assert client.urls == ("http://127.0.0.1:9",)
        assert client.preferred_url == "http://127.0.0.1:9"
