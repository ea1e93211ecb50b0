"""The blocking twins: ``for msg in client.consume(...)``, ``with msg.process():``, ``msg.ack()``, ``with
client.begin_transaction(...)``, against the real API served from a background thread (``real_app``)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pytest

from raft_queue_client import Client, EnqueueOp, Message, SettleOutcome, TransactionState

from .real_app import WallClockBackend, threaded_real_node
from .test_consumer import ops

DEADLINE_S = 5.0


def until(condition: Callable[[], bool], what: str) -> None:
    """Polls ``condition`` until it holds; fails after ``DEADLINE_S``."""
    deadline = time.monotonic() + DEADLINE_S
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def fast_sync_client(url: str) -> Client:
    return Client([url], timeout_s=5.0, max_attempts=4, backoff_initial_s=0.001, backoff_max_s=0.005)


def client_tasks(client: Client) -> set[asyncio.Task[object]]:
    """The tasks running on the client's loop, besides the one asking."""

    async def others() -> set[asyncio.Task[object]]:
        return asyncio.all_tasks() - {asyncio.current_task()}

    return client._call(others())


def test_the_sync_consumer_acks_nacks_and_reraises() -> None:
    with threaded_real_node() as (url, backend), fast_sync_client(url) as client:
        client.create_queue("q")
        client.enqueue("q", "fine")
        client.enqueue("q", b"\xffbroken")
        seen: list[Message] = []
        with pytest.raises(ValueError, match="broken"), client.consume("q", max_in_flight=2, wait_s=0.2) as consumer:
            for message in consumer:
                seen.append(message)
                with message.process():
                    if message.data.endswith(b"broken"):
                        raise ValueError(message.body)
        assert [(m.data, m.settled) for m in seen] == [
            (b"fine", SettleOutcome.ACKED),
            (b"\xffbroken", SettleOutcome.NACKED),
        ]
        assert consumer.closed
        assert client_tasks(client) == set()
        nack = ops(backend, "Nack")[0]  # (the consumer may have received it again, and nacked it at its close)
        assert (nack.receipts, nack.delay_ms) == ([seen[1].receipt], 0)


def test_breaking_out_of_the_sync_loop_nacks_what_was_not_handed_out() -> None:
    with threaded_real_node() as (url, _), fast_sync_client(url) as client:
        client.create_queue("q")
        for body in ("a", "b", "c"):
            client.enqueue("q", body)
        for message in client.consume("q", max_in_flight=3, visibility_timeout_s=30, wait_s=0.2):
            assert message.body == "a"
            break
        # The generator is dropped at the break and its finally closes the consumer, before the next line.
        counts = client.get_queue("q").counts
        assert (counts.ready, counts.leased) == (2, 1)
        assert client_tasks(client) == set()


def test_the_sync_process_keeps_a_slow_handlers_lease() -> None:
    with threaded_real_node() as (url, backend), fast_sync_client(url) as client:
        client.create_queue("q")
        client.enqueue("q", "slow")
        [message] = client.receive("q", visibility_timeout_s=1.0)
        started = time.monotonic()
        with message.process():
            until(lambda: len(ops(backend, "Extend")) >= 3 and time.monotonic() - started > 2.0, "3 extends")
            assert client.receive("q") == []
        assert (message.settled, message.lease_lost) == (SettleOutcome.ACKED, None)
        assert client_tasks(client) == set()


def test_sync_messages_settle_themselves() -> None:
    with threaded_real_node() as (url, _), fast_sync_client(url) as client:
        client.create_queue("q")
        client.enqueue("q", "x")
        [message] = client.receive("q", visibility_timeout_s=30)
        assert message.queue == "q"
        assert message.extend(visibility_timeout_s=60).outcome is SettleOutcome.EXTENDED
        assert message.nack().outcome is SettleOutcome.NACKED
        [again] = client.receive("q")
        assert client.ack("q", again)[0].outcome is SettleOutcome.ACKED  # the client's ack still works
        assert again.settled is SettleOutcome.ACKED  # and reaches the message
        assert again.ack().outcome is SettleOutcome.ALREADY_ACKED


def test_closing_the_sync_client_closes_its_consumer() -> None:
    with threaded_real_node() as (url, backend):
        client = fast_sync_client(url)
        client.create_queue("q")
        client.enqueue("q", "a")
        client.enqueue("q", "b")
        consumer = client.consume("q", max_in_flight=2, visibility_timeout_s=30, wait_s=0.2)
        messages = iter(consumer)  # kept: dropping the iterator would close the consumer itself
        assert next(messages).body == "a"
        assert not consumer.closed
        client.close()
        assert consumer.closed
        assert [type(op).__name__ for op in backend.ops][-1] == "Nack"
        consumer.close()  # a no-op now
        check_ready(backend, "q", 1)


def check_ready(backend: WallClockBackend, queue: str, ready: int) -> None:
    info = backend.queue_info(queue)
    assert info is not None and info.counts.ready == ready


def test_the_sync_transaction_context_commits_or_aborts() -> None:
    with threaded_real_node() as (url, _), fast_sync_client(url) as client:
        client.create_queue("q")
        with client.begin_transaction("t-1") as txn:
            txn.stage([EnqueueOp("q", [b"\x00one"])])
        assert txn.result is not None
        with pytest.raises(KeyError), client.begin_transaction("t-2") as txn:
            txn.stage([EnqueueOp("q", ["two"])])
            raise KeyError("no")
        assert client.get_transaction("t-1", consistency="local").status is TransactionState.COMMITTED
        assert client.get_transaction("t-2").status is TransactionState.ABORTED
        assert [m.data for m in client.receive("q", max_messages=5)] == [b"\x00one"]
