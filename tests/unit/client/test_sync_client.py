"""The blocking ``Client``: from a plain function, from another thread, and from inside an event loop."""

from __future__ import annotations

import asyncio
import threading

import pytest

from raft_queue_client import (
    AckOp,
    Client,
    ClientClosedError,
    EnqueueOp,
    EnqueueOpResult,
    OutcomeUnknownError,
    QueueNotFound,
    RetryEvent,
    Transaction,
    TransactionAborted,
    TransactionConflict,
    TransactionState,
)

from .fake_server import (
    drop,
    no_leader,
    ok,
    outcome_unknown,
    problem,
    redirect,
    threaded_fake_nodes,
    transaction_aborted,
)
from .support import delivery, enqueued, queue_info, txn_committed, txn_enqueued, txn_pending, txn_settled


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


def test_the_sync_client_transacts_and_retries_like_the_async_one() -> None:
    with threaded_fake_nodes(2) as (a, b), fast_sync_client(a.url, b.url, max_attempts=2) as client:
        a.push(outcome_unknown())
        b.push(ok(txn_committed(txn_settled("ack", "acked"), txn_enqueued("m-1"), duplicate=True)))
        result = client.transact("t-1", [AckOp("orders", "r-1"), EnqueueOp("q", ["x"])])
        assert result.duplicate is True
        assert a.requests[0].json == b.requests[0].json
        enqueue = result.results[1]
        assert isinstance(enqueue, EnqueueOpResult)
        [sent] = b.requests[0].json["operations"][1]["messages"]
        assert enqueue.messages[0].idempotency_key == sent["idempotency_key"]

        b.push(transaction_aborted("preconditions", {"op": 0, "code": "stale", "detail": "gone"}))
        with pytest.raises(TransactionAborted) as aborted:
            client.transact("t-2", [AckOp("orders", "r-1")])
        assert [f.code for f in aborted.value.failures] == ["stale"]
        b.push(problem(409, "transaction_conflict"))
        with pytest.raises(TransactionConflict):
            client.transact("t-2", [AckOp("orders", "r-2")])
        a.fallback = b.fallback = drop()
        with pytest.raises(OutcomeUnknownError) as unknown:
            client.transact("t-3", [AckOp("orders", "r-1")])
        assert unknown.value.transaction_id == "t-3"


def test_the_sync_client_runs_an_interactive_transaction() -> None:
    with threaded_fake_nodes(2) as (a, b), fast_sync_client(a.url, b.url) as client:
        a.push(ok(txn_pending(), status=201), drop())
        b.push(
            ok(txn_pending(staged_ops=1, duplicate=True)),
            ok(txn_pending(staged_ops=2)),
            ok(txn_committed(txn_enqueued("m-1"), txn_settled("ack", "acked"))),
            ok(txn_committed(txn_enqueued("m-1"), txn_settled("ack", "acked"))),
        )
        txn = client.begin_transaction("t-1", 10)
        assert isinstance(txn, Transaction)
        assert txn.info is not None
        assert txn.info.status is TransactionState.PENDING
        txn.stage([EnqueueOp("q", ["x"])])  # dropped on a, retried on b with the same seq
        txn.stage([AckOp("orders", "r-1")])
        assert txn.next_stage_seq == 3
        result = txn.commit()
        assert result.decided_index == 21
        assert a.requests[1].json == b.requests[0].json
        assert [r.json["stage_seq"] for r in b.requests[:2]] == [1, 2]
        assert client.get_transaction("t-1").status is TransactionState.COMMITTED

        b.push(ok({"status": "aborted"}))
        resumed = client.resume_transaction("t-9", next_stage_seq=4)
        assert resumed.abort().status is TransactionState.ABORTED
        assert b.requests[-1].path == "/v1/transactions/t-9/abort"


def test_the_sync_client_reuses_the_receive_attempt_id() -> None:
    with threaded_fake_nodes(2) as (a, b), fast_sync_client(a.url, b.url) as client:
        a.push(drop())
        b.push(ok({"messages": [delivery(1, "r-1")], "commit_index": 2}), ok({"messages": []}))
        assert [m.receipt for m in client.receive("orders")] == ["r-1"]
        assert a.requests[0].json == b.requests[0].json
        client.receive("orders", receive_attempt_id="mine")
        assert b.requests[1].json["receive_attempt_id"] == "mine"
