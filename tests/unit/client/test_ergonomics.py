"""Messages that settle themselves, bytes bodies, transactions as context managers, ``get_transaction``'s
consistency: the requests against the scripted fake, the round trips against the real API (``real_app``)."""

from __future__ import annotations

import base64

import pytest

from raft_queue_client import (
    AckOp,
    AsyncMessage,
    EnqueueOp,
    OutgoingMessage,
    SettleOutcome,
    TransactionAborted,
    TransactionState,
)

from .fake_server import fake_nodes, ok, transaction_aborted
from .real_app import real_node
from .support import (
    delivery,
    enqueued,
    fast_client,
    run,
    settled,
    txn_committed,
    txn_enqueued,
    txn_pending,
    txn_settled,
)

#: Not UTF-8 anywhere: a lone continuation byte, an overlong NUL, a byte never valid, and a truncated sequence.
BINARY = b"\x80\xc0\x80\x00\xff\xe2\x82"


def test_a_message_knows_its_queue_and_settles_itself() -> None:
    async def body() -> None:
        async with fake_nodes(1) as (a,), fast_client(a.url) as client:
            a.push(
                ok({"messages": [delivery(1, "r-1")], "commit_index": 2}),
                ok(settled(("r-1", "extended"))),
                ok(settled(("r-1", "nacked"))),
                ok(settled(("r-1", "acked"))),
            )
            [message] = await client.receive("my queue")
            assert isinstance(message, AsyncMessage)
            assert message.queue == "my queue"
            extended = await message.extend(visibility_timeout_s=45)
            nacked = await message.nack(delay_s=2)
            acked = await message.ack()
            assert [r.outcome for r in (extended, nacked, acked)] == [
                SettleOutcome.EXTENDED,
                SettleOutcome.NACKED,
                SettleOutcome.ACKED,
            ]
            assert [(r.raw_path, r.json) for r in a.requests[1:]] == [
                ("/v1/queues/my%20queue/extend", {"receipts": ["r-1"], "visibility_timeout_s": 45}),
                ("/v1/queues/my%20queue/nack", {"receipts": ["r-1"], "delay_s": 2}),
                ("/v1/queues/my%20queue/ack", {"receipts": ["r-1"]}),
            ]
            assert message.settled is SettleOutcome.NACKED  # the first settle is the one that counts

    run(body())


def test_process_on_a_received_message_acks_or_nacks() -> None:
    async def body() -> None:
        async with real_node() as (url, _), fast_client(url) as client:
            await client.create_queue("q")
            await client.enqueue("q", "a")
            await client.enqueue("q", "b")
            first, second = await client.receive("q", max_messages=2)
            async with first.process():
                pass
            with pytest.raises(KeyError):
                async with second.process():
                    raise KeyError("b")
            assert (first.settled, second.settled) == (SettleOutcome.ACKED, SettleOutcome.NACKED)
            # A block that settled the message itself is left alone: no second settle.
            [again] = await client.receive("q")
            async with again.process():
                await again.nack(delay_s=60)
            assert again.settled is SettleOutcome.NACKED
            assert (await client.get_queue("q")).counts.delayed == 1

    run(body())


def test_bodies_go_out_as_body_or_body_base64() -> None:
    async def body() -> None:
        async with fake_nodes(1) as (a,), fast_client(a.url) as client:
            a.push(
                ok(enqueued(), status=201),
                ok(enqueued(), status=201),
                ok({"messages": [{"message_id": "m-1", "seq": 1, "duplicate": False}] * 2, "commit_index": 3}, 201),
                ok(txn_committed(txn_enqueued("m-1"), txn_enqueued("m-2", "m-3"))),
            )
            await client.enqueue("q", "text")
            await client.enqueue("q", BINARY)
            await client.enqueue_batch("q", [OutgoingMessage("text"), OutgoingMessage(BINARY)])
            # A single bytes body is one message, not a sequence of ints (the type asks for a list; mypy says so).
            single = EnqueueOp("q", BINARY)  # type: ignore[arg-type]
            await client.transact("t-1", [single, EnqueueOp("q", ["text", BINARY])])
            encoded = base64.b64encode(BINARY).decode()
            single_text, single_bytes, batch, txn = (r.json for r in a.requests)
            assert (single_text["body"], "body_base64" in single_text) == ("text", False)
            assert (single_bytes["body_base64"], "body" in single_bytes) == (encoded, False)
            assert [m.get("body") or m["body_base64"] for m in batch["messages"]] == ["text", encoded]
            ops = txn["operations"]
            assert [m["body_base64"] for m in ops[0]["messages"]] == [encoded]
            assert [m.get("body") or m["body_base64"] for m in ops[1]["messages"]] == ["text", encoded]
            with pytest.raises(TypeError, match="str or bytes"):
                await client.enqueue("q", 42)  # type: ignore[arg-type]

    run(body())


def test_a_received_body_base64_gives_exact_data_and_replaced_text() -> None:
    async def body() -> None:
        async with fake_nodes(1) as (a,), fast_client(a.url) as client:
            answer = {**delivery(1, "r-1"), "body_base64": base64.b64encode(BINARY).decode()}
            del answer["body"]
            a.push(ok({"messages": [answer]}), ok({"messages": [{**answer, "body_base64": None}]}))
            [message] = await client.receive("q")
            assert message.data == BINARY
            assert message.body == BINARY.decode("utf-8", errors="replace")
            with pytest.raises(Exception, match="without body") as caught:
                await client.receive("q")
            assert type(caught.value).__name__ == "ProtocolError"

    run(body())


def test_a_non_utf8_body_round_trips_exactly_through_the_real_api() -> None:
    async def body() -> None:
        async with real_node() as (url, _), fast_client(url) as client:
            await client.create_queue("q")
            await client.enqueue("q", BINARY)
            await client.enqueue_batch("q", [OutgoingMessage(BINARY + b"1"), OutgoingMessage("ünïcode")])
            await client.transact("t-1", [EnqueueOp("q", [BINARY + b"2"])])
            got = await client.receive("q", max_messages=10)
            assert [m.data for m in got] == [BINARY, BINARY + b"1", "ünïcode".encode(), BINARY + b"2"]
            assert got[0].body == BINARY.decode("utf-8", errors="replace")
            assert got[2].body == "ünïcode"
            # The same bytes as text or base64 are the same message (one fingerprint per idempotency key).
            first = await client.enqueue("q", "same", idempotency_key="k")
            again = await client.enqueue("q", b"same", idempotency_key="k")
            assert (again.duplicate, again.message_id) == (True, first.message_id)

    run(body())


def test_a_transaction_context_commits_on_success() -> None:
    async def body() -> None:
        async with fake_nodes(1) as (a,), fast_client(a.url) as client:
            a.push(
                ok(txn_pending("t-1"), status=201),
                ok(txn_pending("t-1", staged_ops=1)),
                ok(txn_committed(txn_enqueued("m-1"))),
            )
            async with client.begin_transaction("t-1", timeout_s=5) as txn:
                await txn.stage([EnqueueOp("q", "x")])
            assert [(r.method, r.path) for r in a.requests] == [
                ("PUT", "/v1/transactions/t-1"),
                ("POST", "/v1/transactions/t-1/operations"),
                ("POST", "/v1/transactions/t-1/commit"),
            ]
            assert txn.result is not None and txn.result.decided_index == 21

    run(body())


def test_a_transaction_context_aborts_on_an_exception_and_reraises() -> None:
    async def body() -> None:
        async with fake_nodes(1) as (a,), fast_client(a.url) as client:
            a.push(
                ok(txn_pending("t-1"), status=201),
                ok({"transaction_id": "t-1", "status": "aborted", "reason": "aborted"}),
            )
            with pytest.raises(RuntimeError, match="changed my mind"):
                async with client.begin_transaction("t-1") as txn:
                    raise RuntimeError("changed my mind")
            assert [r.path for r in a.requests] == ["/v1/transactions/t-1", "/v1/transactions/t-1/abort"]
            assert txn.info is not None and txn.info.status is TransactionState.ABORTED

    run(body())


def test_a_transaction_context_raises_a_failed_commit_and_leaves_a_decided_one_alone() -> None:
    async def body() -> None:
        async with fake_nodes(1) as (a,), fast_client(a.url) as client:
            a.push(
                ok(txn_pending("t-1"), status=201),
                transaction_aborted("preconditions", {"op": 0, "code": "stale", "detail": "lease ran out"}),
                ok(txn_pending("t-2"), status=201),
                ok(txn_committed(txn_settled("ack", "acked"), transaction_id="t-2")),
            )
            with pytest.raises(TransactionAborted):
                async with client.begin_transaction("t-1"):
                    pass
            txn = await client.begin_transaction("t-2")  # still awaitable
            async with txn:
                await txn.commit()  # decided inside: the exit sends nothing more
            assert [r.path for r in a.requests][-2:] == ["/v1/transactions/t-2", "/v1/transactions/t-2/commit"]

    run(body())


def test_a_transaction_context_against_the_real_api() -> None:
    async def body() -> None:
        async with real_node() as (url, _), fast_client(url) as client:
            await client.create_queue("in")
            await client.create_queue("out")
            await client.enqueue("in", "order")
            [order] = await client.receive("in")
            async with order.process(), client.begin_transaction("t-1") as txn:
                await txn.stage([EnqueueOp("out", [b"\x00settled"])])
                await txn.stage([AckOp(order.queue, order)])
            # The transaction acked the order: process() saw it and sent nothing more.
            assert order.settled is SettleOutcome.ACKED
            [out] = await client.receive("out")
            assert out.data == b"\x00settled"
            with pytest.raises(ZeroDivisionError):
                async with client.begin_transaction("t-2") as txn:
                    await txn.stage([EnqueueOp("out", "never")])
                    _ = 1 / 0
            assert (await client.get_transaction("t-2", consistency="local")).status is TransactionState.ABORTED
            assert await client.receive("out") == []

    run(body())


def test_get_transaction_sends_its_consistency() -> None:
    async def body() -> None:
        async with fake_nodes(1) as (a,), fast_client(a.url) as client:
            a.fallback = ok(txn_pending("t-1"))
            await client.get_transaction("t-1")
            await client.get_transaction("t-1", consistency="local")
            await client.get_transaction("t-1", consistency="linearizable")
            assert [r.query for r in a.requests] == [
                {"redirect": "true"},
                {"redirect": "true", "consistency": "local"},
                {"redirect": "true"},
            ]
            with pytest.raises(ValueError, match="consistency"):
                await client.get_transaction("t-1", consistency="eventual")  # type: ignore[arg-type]

    run(body())
