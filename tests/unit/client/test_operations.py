"""Each operation sends what docs/http-api.md says and decodes what it answers."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from raft_queue_client import (
    AsyncClient,
    OutcomeUnknownError,
    OutgoingMessage,
    ProtocolError,
    QueueConfig,
    ReceivedMessage,
    SettleOutcome,
    SettleResult,
    UnavailableError,
)

from .fake_server import drop, fake_nodes, hang, ok, outcome_unknown
from .support import cluster_status, created, delivery, enqueued, fast_client, queue_info, run, settled


def test_create_queue_sends_only_the_given_settings() -> None:
    async def body() -> None:
        async with fake_nodes(1) as (a,), fast_client(a.url) as client:
            a.push(ok(created(), status=201), ok(created(was_created=False), status=200))
            result = await client.create_queue(
                "orders", visibility_timeout_s=12.5, max_deliveries=3, dead_letter_queue="orders-dlq"
            )
            again = await client.create_queue("orders")
            assert a.requests[0].method == "PUT"
            assert a.requests[0].path == "/v1/queues/orders"
            assert a.requests[0].headers["Content-Type"] == "application/json"
            assert a.requests[0].json == {
                "visibility_timeout_s": 12.5,
                "max_deliveries": 3,
                "dead_letter_queue": "orders-dlq",
            }
            assert a.requests[1].json == {}
            assert (result.created, again.created, result.commit_index) == (True, False, 7)
            assert result.queue.config == QueueConfig(
                visibility_timeout_s=30,
                max_deliveries=0,
                max_length=0,
                dedup_window_s=86400,
                max_message_bytes=1048576,
                dead_letter_queue=None,
            )
            assert result.queue.created_at == datetime(2024, 5, 1, 12, 0, 0, 123000, tzinfo=UTC)

    run(body())


def test_get_and_list_queues_with_consistency() -> None:
    async def body() -> None:
        async with fake_nodes(1) as (a,), fast_client(a.url) as client:
            a.push(
                ok(queue_info()),
                ok(queue_info()),
                ok({"queues": [queue_info("a"), queue_info("b")]}),
                ok({"queues": []}),
            )
            info = await client.get_queue("orders")
            await client.get_queue("orders", consistency="local")
            queues = await client.list_queues()
            assert await client.list_queues(consistency="local") == []
            assert [r.query for r in a.requests] == [
                {"redirect": "true"},
                {"redirect": "true", "consistency": "local"},
                {"redirect": "true"},
                {"redirect": "true", "consistency": "local"},
            ]
            assert [r.method for r in a.requests] == ["GET"] * 4
            assert a.requests[2].path == "/v1/queues"
            assert info.counts.dead_lettered == 4
            assert [q.name for q in queues] == ["a", "b"]
            with pytest.raises(ValueError, match="consistency"):
                await client.get_queue("orders", consistency="eventual")  # type: ignore[arg-type]
            assert len(a.requests) == 4

    run(body())


def test_queue_names_are_percent_encoded() -> None:
    async def body() -> None:
        async with fake_nodes(1) as (a,), fast_client(a.url) as client:
            a.push(ok(queue_info()))
            await client.get_queue("a/b c")
            assert a.requests[0].raw_path == "/v1/queues/a%2Fb%20c"

    run(body())


def test_delete_queue() -> None:
    async def body() -> None:
        async with fake_nodes(1) as (a,), fast_client(a.url) as client:
            a.push(ok({"deleted": True, "commit_index": 12}))
            result = await client.delete_queue("orders")
            assert result.commit_index == 12
            assert (a.requests[0].method, a.requests[0].path) == ("DELETE", "/v1/queues/orders")

    run(body())


def test_enqueue_generates_a_uuid4_key_and_sends_only_what_was_given() -> None:
    async def body() -> None:
        async with fake_nodes(1) as (a,), fast_client(a.url) as client:
            a.push(ok(enqueued("m-1", 1), status=201), ok(enqueued("m-2", 2), status=201))
            first = await client.enqueue("orders", "plain")
            second = await client.enqueue("orders", "rich", attributes={"k": "v"}, delay_s=2.5)
            assert uuid.UUID(first.idempotency_key).version == 4
            assert first.idempotency_key != second.idempotency_key
            assert a.requests[0].json == {"body": "plain", "idempotency_key": first.idempotency_key}
            assert a.requests[1].json == {
                "body": "rich",
                "idempotency_key": second.idempotency_key,
                "attributes": {"k": "v"},
                "delay_s": 2.5,
            }
            assert (first.message_id, first.seq, first.duplicate, first.commit_index) == ("m-1", 1, False, 9)

    run(body())


def test_enqueue_batch_keys_every_message_and_keeps_the_callers_keys() -> None:
    async def body() -> None:
        async with fake_nodes(2) as (a, b), fast_client(a.url, b.url) as client:
            items = [{"message_id": f"m-{i}", "seq": i, "duplicate": i == 2} for i in (1, 2)]
            a.push(outcome_unknown())
            b.push(ok({"messages": items, "commit_index": 5}, status=201))
            messages = [OutgoingMessage("one"), OutgoingMessage("two", idempotency_key="k-2", delay_s=1)]
            result = await client.enqueue_batch("orders", messages)
            sent = b.requests[0].json["messages"]
            assert a.requests[0].json == b.requests[0].json
            assert sent[1] == {"body": "two", "idempotency_key": "k-2", "delay_s": 1}
            assert [m.idempotency_key for m in result.messages] == [sent[0]["idempotency_key"], "k-2"]
            assert [m.duplicate for m in result.messages] == [False, True]
            assert result.commit_index == 5

    run(body())


def test_an_unknown_batch_outcome_carries_every_key() -> None:
    async def body() -> None:
        async with fake_nodes(1) as (a,), fast_client(a.url, max_attempts=2) as client:
            a.fallback = drop()
            with pytest.raises(OutcomeUnknownError) as caught:
                await client.enqueue_batch("orders", [OutgoingMessage("x", idempotency_key="k1"), OutgoingMessage("y")])
            keys = caught.value.idempotency_keys
            assert keys[0] == "k1"
            assert keys == tuple(m["idempotency_key"] for m in a.requests[0].json["messages"])

    run(body())


def test_a_batch_answer_of_the_wrong_length_is_a_protocol_error() -> None:
    async def body() -> None:
        async with fake_nodes(1) as (a,), fast_client(a.url) as client:
            a.push(ok({"messages": [], "commit_index": 5}, status=201))
            with pytest.raises(ProtocolError):
                await client.enqueue_batch("orders", [OutgoingMessage("x")])

    run(body())


def test_receive() -> None:
    async def body() -> None:
        async with fake_nodes(1) as (a,), fast_client(a.url) as client:
            a.push(
                ok({"messages": [delivery(1, "r-1"), delivery(2, "r-2")], "commit_index": 8}),
                ok({"messages": []}),
            )
            got = await client.receive("orders", max_messages=5, visibility_timeout_s=60, wait_s=0.5)
            assert await client.receive("orders") == []
            assert a.requests[0].path == "/v1/queues/orders/receive"
            first, second = (r.json for r in a.requests)
            assert first == {
                "max_messages": 5,
                "wait_s": 0.5,
                "visibility_timeout_s": 60,
                "receive_attempt_id": first["receive_attempt_id"],
                "body_encoding": "base64",
            }
            assert second == {
                "max_messages": 1,
                "wait_s": 0,
                "receive_attempt_id": second["receive_attempt_id"],
                "body_encoding": "base64",
            }
            # A uuid4 in hex, new for every call.
            assert uuid.UUID(hex=first["receive_attempt_id"]).version == 4
            assert first["receive_attempt_id"] == uuid.UUID(hex=first["receive_attempt_id"]).hex
            assert first["receive_attempt_id"] != second["receive_attempt_id"]
            assert [m.receipt for m in got] == ["r-1", "r-2"]
            # A server that answers "body" (text) is understood too.
            assert (got[0].body, got[0].data, got[0].queue) == ("body 1", b"body 1", "orders")
            assert got[0].attributes == {"k": "v"}
            assert got[0].lease_expires_at == datetime(2024, 5, 1, 12, 0, 30, tzinfo=UTC)

    run(body())


@pytest.mark.parametrize("name", ["503 outcome_unknown", "dropped connection", "no answer"])
def test_a_retried_receive_sends_the_same_receive_attempt_id(name: str) -> None:
    step = {"503 outcome_unknown": outcome_unknown(), "dropped connection": drop(), "no answer": hang()}[name]

    async def body() -> None:
        async with fake_nodes(2) as (a, b), fast_client(a.url, b.url, timeout_s=0.3) as client:
            a.push(step)
            b.push(ok({"messages": [delivery(1, "r-1")], "commit_index": 8}))
            got = await client.receive("orders", max_messages=3)
            assert [m.receipt for m in got] == ["r-1"]
            assert a.requests[0].json == b.requests[0].json  # the identical body, attempt ID included
            assert "receive_attempt_id" in b.requests[0].json

    run(body())


def test_a_callers_receive_attempt_id_is_sent_and_an_unknown_receive_carries_it() -> None:
    async def body() -> None:
        async with fake_nodes(1) as (a,), fast_client(a.url, max_attempts=2) as client:
            a.fallback = drop()
            with pytest.raises(OutcomeUnknownError) as caught:
                await client.receive("orders")
            lost = caught.value.receive_attempt_id
            assert lost is not None
            assert [r.json["receive_attempt_id"] for r in a.requests] == [lost, lost]
            a.fallback = None
            a.push(ok({"messages": [delivery(4, "r-4")], "commit_index": 9}))
            got = await client.receive("orders", receive_attempt_id=lost)  # collect what the lost call leased
            assert a.requests[-1].json["receive_attempt_id"] == lost
            assert got[0].receipt == "r-4"
            assert caught.value.transaction_id is None

    run(body())


def test_a_retried_ack_reports_already_acked() -> None:
    async def body() -> None:
        async with fake_nodes(2) as (a, b), fast_client(a.url, b.url) as client:
            a.push(drop())
            b.push(ok(settled(("r-1", "already_acked"), ("r-2", "stale"))))
            results = await client.ack("orders", ["r-1", "r-2"])
            assert [r.outcome for r in results] == [SettleOutcome.ALREADY_ACKED, SettleOutcome.STALE]
            assert a.requests[0].json == b.requests[0].json

    run(body())


def test_settling_takes_receipts_or_messages_and_keeps_the_order() -> None:
    async def body() -> None:
        async with fake_nodes(1) as (a,), fast_client(a.url) as client:
            message = ReceivedMessage(
                message_id="m-1",
                seq=1,
                body="b",
                attributes={},
                receipt="r-1",
                delivery_count=1,
                enqueued_at=datetime(2024, 1, 1, tzinfo=UTC),
                enqueued_at_ms=0,
                lease_expires_at=datetime(2024, 1, 1, tzinfo=UTC),
                lease_expires_at_ms=0,
            )
            a.push(
                ok(settled(("r-1", "acked"), ("r-2", "stale"))),
                ok(settled(("r-1", "dead_lettered"))),
                ok(settled(("r-3", "extended"))),
            )
            acked = await client.ack("orders", [message, "r-2"])
            nacked = await client.nack("orders", message, delay_s=3)
            extended = await client.extend("orders", "r-3", visibility_timeout_s=90)
            assert acked == [
                SettleResult(receipt="r-1", outcome=SettleOutcome.ACKED),
                SettleResult(receipt="r-2", outcome=SettleOutcome.STALE),
            ]
            assert nacked[0].outcome is SettleOutcome.DEAD_LETTERED
            assert extended[0].outcome is SettleOutcome.EXTENDED
            assert [(r.path, r.json) for r in a.requests] == [
                ("/v1/queues/orders/ack", {"receipts": ["r-1", "r-2"]}),
                ("/v1/queues/orders/nack", {"receipts": ["r-1"], "delay_s": 3}),
                ("/v1/queues/orders/extend", {"receipts": ["r-3"], "visibility_timeout_s": 90}),
            ]

    run(body())


def test_nack_without_delay_sends_no_delay() -> None:
    async def body() -> None:
        async with fake_nodes(1) as (a,), fast_client(a.url) as client:
            a.push(ok(settled(("r-1", "nacked"))))
            await client.nack("orders", ["r-1"])
            assert a.requests[0].json == {"receipts": ["r-1"]}

    run(body())


@pytest.mark.parametrize(
    "answer",
    [
        settled(("r-1", "acked"), ("r-2", "acked")),  # more results than receipts
        settled(("r-1", "vanished")),  # not an outcome of the API
    ],
)
def test_a_settle_answer_that_is_not_the_api_is_a_protocol_error(answer: dict[str, object]) -> None:
    async def body() -> None:
        async with fake_nodes(1) as (a,), fast_client(a.url) as client:
            a.push(ok(answer))
            with pytest.raises(ProtocolError):
                await client.ack("orders", ["r-1"])

    run(body())


def test_cluster_is_asked_without_redirect_and_gives_the_leader() -> None:
    async def body() -> None:
        async with fake_nodes(2) as (a, b), fast_client(a.url) as client:
            a.push(ok(cluster_status(b.url)), ok(cluster_status(None)))
            status = await client.cluster()
            assert await client.leader_url() is None
            assert a.requests[0].path == "/v1/cluster"
            assert a.requests[0].query == {}
            assert (status.role, status.leader_url, status.term) == ("follower", b.url, 3)
            assert status.members[0].connected is True

    run(body())


def test_fields_the_server_adds_later_are_ignored() -> None:
    async def body() -> None:
        async with fake_nodes(1) as (a,), fast_client(a.url) as client:
            a.push(ok({**enqueued(), "shard": 3}, status=201))
            result = await client.enqueue("orders", "x")
            assert result.seq == 1

    run(body())


def test_urls_are_validated_and_normalized() -> None:
    client = fast_client("http://127.0.0.1:8001/", "http://127.0.0.1:8001", "https://h:1/prefix/")
    assert client.urls == ("http://127.0.0.1:8001", "https://h:1/prefix")
    assert client.preferred_url == "http://127.0.0.1:8001"
    for bad in ([], ["127.0.0.1:8001"], ["ftp://h"], ["http://h/?q=1"]):
        with pytest.raises(ValueError, match="URL"):
            fast_client(*bad)
    with pytest.raises(TypeError, match="not one string"):
        AsyncClient("http://h:1")
    with pytest.raises(ValueError, match="timeout_s"):
        AsyncClient(["http://h:1"], timeout_s=0)
    with pytest.raises(ValueError, match="max_attempts"):
        AsyncClient(["http://h:1"], max_attempts=0)


def test_an_async_client_stays_on_its_event_loop() -> None:
    client = fast_client("http://127.0.0.1:9", max_attempts=1)

    async def first() -> None:
        with pytest.raises(UnavailableError):
            await client.get_queue("orders")

    async def second() -> None:
        with pytest.raises(RuntimeError, match="event loop"):
            await client.get_queue("orders")

    async def close() -> None:
        await client.close()

    try:
        run(first())
        run(second())
    finally:
        run(close())  # the session has no open connection, so any loop can close it
