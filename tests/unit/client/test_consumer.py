"""The consumer loop (``AsyncClient.consume``) and ``msg.process()``: against the real API over a real state machine
whose leases run on the wall clock (``real_app``), and against the scripted fake where the exact requests matter."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import pytest

from raft_queue_client import AsyncClient, AsyncMessage, SettleOutcome

from .fake_server import fake_nodes, hang, ok
from .real_app import WallClockBackend, real_node
from .support import delivery, fast_client, run, settled

#: How long a test waits for something that should happen at once (a poll, never a sleep that hopes).
DEADLINE_S = 5.0


async def until(condition: Callable[[], bool], what: str, deadline_s: float = DEADLINE_S) -> None:
    """Polls ``condition`` until it holds; fails after ``deadline_s``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + deadline_s
    while not condition():
        assert loop.time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.01)


SERVER_AND_TEST_TASKS = ("wait_for", "RequestHandler.start", "RequestHandler._handle_request")


def only_this_task() -> bool:
    """No task runs but the test's own (with ``run``'s ``wait_for`` around it) and the test server's connection
    handlers, which are not the client's."""
    others = asyncio.all_tasks() - {asyncio.current_task()}
    return all(getattr(task.get_coro(), "__qualname__", "") in SERVER_AND_TEST_TASKS for task in others)


def ops(backend: WallClockBackend, name: str) -> list[Any]:
    """The commands of type ``name`` the state machine applied."""
    return [op for op in backend.ops if type(op).__name__ == name]


def test_process_acks_on_success_and_nacks_and_reraises_on_an_exception() -> None:
    async def body() -> None:
        async with real_node() as (url, backend), fast_client(url) as client:
            await client.create_queue("q")
            await client.enqueue("q", "fine")
            await client.enqueue("q", "broken")
            seen: list[AsyncMessage] = []
            with pytest.raises(ValueError, match="cannot handle"):
                async with client.consume("q", max_in_flight=1, wait_s=0.2) as messages:
                    async for message in messages:
                        seen.append(message)
                        async with message.process():
                            if message.body == "broken":
                                raise ValueError("cannot handle it")
            assert [(m.body, m.settled) for m in seen] == [
                ("fine", SettleOutcome.ACKED),
                ("broken", SettleOutcome.NACKED),
            ]
            # The first nack, without a delay: ready again at once, not after a lease (the consumer may have
            # received it again before it closed, and nacked it again then).
            nack = ops(backend, "Nack")[0]
            assert (nack.receipts, nack.delay_ms) == ([seen[1].receipt], 0)
            assert (await client.get_queue("q")).counts.acked_total == 1

    run(body())


def test_the_background_extension_keeps_a_slow_handlers_lease() -> None:
    async def body() -> None:
        async with real_node() as (url, backend), fast_client(url) as client, fast_client(url) as other:
            await client.create_queue("q")
            await client.enqueue("q", "slow")
            loop = asyncio.get_running_loop()
            async with client.consume("q", max_in_flight=1, visibility_timeout_s=1.0, wait_s=0.2) as messages:
                message = await messages.next()
                started = loop.time()
                async with message.process():
                    # The handler outlives its visibility timeout (1 s) twice over ...
                    await until(lambda: len(ops(backend, "Extend")) >= 3 and loop.time() - started > 2.0, "3 extends")
                    # ... and nobody else can receive the message meanwhile.
                    assert await other.receive("q") == []
                    assert message.lease_lost is None
            assert message.settled is SettleOutcome.ACKED
            assert (await client.get_queue("q")).counts.acked_total == 1
            await until(only_this_task, "the consumer's tasks to end")

    run(body())


def test_a_lost_lease_is_reported_and_not_acked(caplog: pytest.LogCaptureFixture) -> None:
    async def body() -> None:
        lost: list[AsyncMessage] = []
        async with real_node() as (url, backend), fast_client(url) as client, fast_client(url) as other:
            await client.create_queue("q")
            await client.enqueue("q", "x")
            consumer = client.consume(
                "q", max_in_flight=1, visibility_timeout_s=0.6, wait_s=0.2, on_lease_lost=lost.append
            )
            async with consumer as messages:
                async for message in messages:
                    async with message.process():
                        # Someone else (another client, so this one cannot know) nacks the delivery away.
                        await other.nack("q", message.receipt)
                        await until(lambda: bool(lost), "the lost lease to be reported")
                    break
            assert lost == [message]
            assert message.lease_lost is SettleOutcome.STALE
            assert message.settled is None
            assert ops(backend, "Ack") == []  # nothing acked after the lease was known lost
            assert "the lease was lost" in caplog.text

    with caplog.at_level(logging.WARNING, logger="raft_queue_client"):
        run(body())


def test_max_in_flight_bounds_what_is_leased_and_unsettled() -> None:
    async def body() -> None:
        async with fake_nodes(1) as (a,), fast_client(a.url) as client:
            a.push(ok({"messages": [delivery(1, "r-1"), delivery(2, "r-2")], "commit_index": 3}))
            a.push(ok(settled(("r-1", "acked"))))
            a.fallback = hang()  # every later long poll waits until the consumer gives up on it
            async with client.consume("orders", max_in_flight=2, visibility_timeout_s=30, wait_s=5) as consumer:
                first = await consumer.next()
                second = await consumer.next()
                assert (first.receipt, second.receipt, consumer.in_flight) == ("r-1", "r-2", 2)
                assert a.requests[0].json["max_messages"] == 2
                assert len(a.requests) == 1  # no slot free: no receive
                await first.ack()
                await until(lambda: len(a.requests) == 3, "a receive for the freed slot")
                assert [r.path for r in a.requests[1:]] == ["/v1/queues/orders/ack", "/v1/queues/orders/receive"]
                assert a.requests[2].json["max_messages"] == 1
                assert a.requests[2].json["wait_s"] == 5
                assert consumer.in_flight == 1
            await until(only_this_task, "the consumer's tasks to end")
            assert a.unexpected == []

    run(body())


def test_breaking_out_stops_the_consumer_and_nacks_what_it_had_not_handed_out() -> None:
    async def body() -> None:
        async with fake_nodes(1) as (a,), fast_client(a.url) as client:
            a.push(ok({"messages": [delivery(1, "r-1"), delivery(2, "r-2"), delivery(3, "r-3")]}))
            a.push(ok(settled(("r-2", "nacked"), ("r-3", "nacked"))))
            async for message in client.consume("orders", max_in_flight=3, visibility_timeout_s=30, wait_s=5):
                assert message.receipt == "r-1"
                break
            # Dropping the iterator closes the consumer (asyncio finalizes it): a nack of the other two, no tasks.
            await until(lambda: len(a.requests) == 2 and only_this_task(), "the consumer to close")
            assert (a.requests[1].path, a.requests[1].json) == ("/v1/queues/orders/nack", {"receipts": ["r-2", "r-3"]})
            assert client._consumers == set()

    run(body())


def test_closing_the_client_closes_its_consumers() -> None:
    async def body() -> None:
        async with fake_nodes(1) as (a,):
            client = fast_client(a.url)
            a.push(ok({"messages": [delivery(1, "r-1"), delivery(2, "r-2")]}), ok(settled(("r-2", "nacked"))))
            a.fallback = hang()
            consumer = client.consume("orders", max_in_flight=2, visibility_timeout_s=30, wait_s=5)
            assert (await consumer.next()).receipt == "r-1"
            await client.close()
            assert consumer.closed
            assert (a.requests[-1].path, a.requests[-1].json) == ("/v1/queues/orders/nack", {"receipts": ["r-2"]})
            with pytest.raises(StopAsyncIteration):
                await consumer.next()
            await until(only_this_task, "the consumer's tasks to end")

    run(body())


def test_the_queue_default_visibility_timeout_is_read_once_and_receive_errors_reach_the_loop() -> None:
    async def body() -> None:
        async with real_node() as (url, _), fast_client(url) as client:
            await client.create_queue("q", visibility_timeout_s=7)
            await client.enqueue("q", "x")
            async with client.consume("q", wait_s=0.2) as consumer:
                message = await consumer.next()
                assert message._lease.length_s == 7
                await message.ack()
            with pytest.raises(Exception, match="missing") as caught:
                async for _ in client.consume("missing", wait_s=0.2):
                    pass
            assert type(caught.value).__name__ == "QueueNotFound"
            await until(only_this_task, "the failed consumer to close")

    run(body())


def test_consume_checks_its_arguments() -> None:
    async def body() -> None:
        async with AsyncClient(["http://127.0.0.1:1"]) as client:
            with pytest.raises(ValueError, match="max_in_flight"):
                client.consume("q", max_in_flight=0)
            with pytest.raises(ValueError, match="wait_s"):
                client.consume("q", wait_s=21)

    run(body())


def test_a_message_outlives_its_closed_consumer() -> None:
    async def body() -> None:
        async with fake_nodes(1) as (a,), fast_client(a.url) as client:
            a.push(ok({"messages": [delivery(1, "r-1")]}), ok(settled(("r-1", "acked"))))
            a.fallback = hang()
            async with client.consume("orders", max_in_flight=1, visibility_timeout_s=30, wait_s=5) as consumer:
                message = await consumer.next()
            # The consumer's lease keeper is gone: process() keeps the lease with one of its own, and stops it.
            async with message.process():
                assert not only_this_task()
            assert message.settled is SettleOutcome.ACKED
            await until(only_this_task, "the block's lease keeper to end")

    run(body())
