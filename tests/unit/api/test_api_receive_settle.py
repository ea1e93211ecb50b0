"""Receive (and its long poll), ack, nack, extend."""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from state_machine.commands import Ack, Extend, Nack, Receive
from state_machine.results import Delivery, ErrorCode, Received, Rejected, Settled, SettleOutcome
from tests.unit.api.fakes import NOW_MS, FakeBackend
from tests.unit.api.harness import async_test, problem, serve


def _delivery(seq: int, body: bytes = b"hi") -> Delivery:
    return Delivery(
        message_id=f"m{seq}",
        seq=seq,
        body=body,
        attributes={"a": "b"},
        receipt=f"r{seq}",
        delivery_count=2,
        enqueued_at_ms=NOW_MS,
        lease_expires_at_ms=NOW_MS + 30_000,
    )


@async_test
async def test_receive_renders_deliveries() -> None:
    fake = FakeBackend()
    fake.script = lambda op: Received([_delivery(7), _delivery(8, "ü".encode() + b"\xff")])
    async with serve(fake) as client:
        response = await client.post("/v1/queues/orders/receive", json={"max_messages": 2, "visibility_timeout_s": 0.5})
        assert response.status == 200
        body = await response.json()
    assert body["commit_index"] == 101
    assert body["messages"][0] == {
        "message_id": "m7",
        "seq": 7,
        "body": "hi",
        "attributes": {"a": "b"},
        "receipt": "r7",
        "delivery_count": 2,
        "enqueued_at": "2024-05-01T12:00:00.123Z",
        "enqueued_at_ms": NOW_MS,
        "lease_expires_at": "2024-05-01T12:00:30.123Z",
        "lease_expires_at_ms": NOW_MS + 30_000,
    }
    assert body["messages"][1]["body"] == "ü\ufffd"
    assert fake.ops == [Receive("orders", 2, 500)]


@async_test
async def test_receive_empty_body_uses_defaults_and_does_not_wait() -> None:
    fake = FakeBackend()
    async with serve(fake) as client:
        response = await client.post("/v1/queues/orders/receive")
        assert response.status == 200
        assert await response.json() == {"messages": [], "commit_index": 101}
        await client.post("/v1/queues/orders/receive", json={"visibility_timeout_s": None, "wait_s": 0})
    assert fake.ops == [Receive("orders", 1, None)] * 2
    assert fake.wait_calls == []


@async_test
async def test_long_poll_returns_when_activity_arrives() -> None:
    fake = FakeBackend()
    async with serve(fake) as client:
        started = time.monotonic()
        request = asyncio.create_task(client.post("/v1/queues/orders/receive", json={"wait_s": 20}))
        async with asyncio.timeout(2):
            await fake.waiting.wait()
        assert len(fake.ops) == 1
        assert 19 < fake.wait_calls[0] <= 20
        fake.script = lambda op: Received([_delivery(1)])
        fake.release()
        async with asyncio.timeout(2):
            response = await request
        assert response.status == 200
        body = await response.json()
    assert [m["seq"] for m in body["messages"]] == [1]
    assert body["commit_index"] == 102
    assert len(fake.ops) == 2
    assert time.monotonic() - started < 2


@async_test
async def test_long_poll_gives_up_after_wait_s() -> None:
    fake = FakeBackend()
    async with serve(fake) as client:
        started = time.monotonic()
        response = await client.post("/v1/queues/orders/receive", json={"wait_s": 0.2})
        elapsed = time.monotonic() - started
        assert response.status == 200
        assert (await response.json())["messages"] == []
    assert 0.15 < elapsed < 1.5
    assert len(fake.ops) >= 2  # polled once, waited, polled again at the deadline


@async_test
async def test_long_poll_waits_only_until_next_visible() -> None:
    fake = FakeBackend()
    visible_at_ms = int(time.time() * 1000) + 3000
    fake.script = lambda op: Received([], next_visible_at_ms=visible_at_ms)
    async with serve(fake) as client:
        request = asyncio.create_task(client.post("/v1/queues/orders/receive", json={"wait_s": 10}))
        async with asyncio.timeout(2):
            await fake.waiting.wait()
        assert 2 < fake.wait_calls[0] <= 3
        fake.script = lambda op: Received([], next_visible_at_ms=visible_at_ms - 10_000)  # already due
        fake.waiting.clear()
        fake.release()
        async with asyncio.timeout(2):
            await fake.waiting.wait()
        assert fake.wait_calls[1] == pytest.approx(0.01)
        fake.script = lambda op: Received([_delivery(3)])
        fake.release()
        async with asyncio.timeout(2):
            response = await request
        assert response.status == 200


#: Anything but "text" or "base64", exactly so (see tests/unit/api/test_api_binary_bodies.py for the good ones).
BAD_BODY_ENCODINGS: list[object] = ["binary", "BASE64", "Text", "", "base64url", None, 1, ["base64"]]
BAD_RECEIVES: list[tuple[object, str | None]] = [
    (b"[]", None),
    ({"max_messages": 0}, "max_messages"),
    ({"max_messages": 1001}, "max_messages"),
    ({"max_messages": 1.0}, "max_messages"),
    ({"max_messages": True}, "max_messages"),
    ({"wait_s": 20.5}, "wait_s"),
    ({"wait_s": -0.1}, "wait_s"),
    ({"wait_s": "1"}, "wait_s"),
    ({"visibility_timeout_s": 0}, "visibility_timeout_s"),
    ({"visibility_timeout_s": 0.0004}, "visibility_timeout_s"),
    ({"visibility_timeout_s": 43201}, "visibility_timeout_s"),
    ({"visibility_timeout_s": False}, "visibility_timeout_s"),
    ({"max_message": 1}, "max_message"),
    *(({"body_encoding": bad}, "body_encoding") for bad in BAD_BODY_ENCODINGS),
]


@pytest.mark.parametrize(("body", "field"), BAD_RECEIVES)
@async_test
async def test_bad_receive_is_400(body: object, field: str | None) -> None:
    fake = FakeBackend()
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    async with serve(fake) as client:
        response = await client.post("/v1/queues/orders/receive", data=data)
        assert (await problem(response, 400, "invalid_request")).get("field") == field
    assert fake.ops == []


@async_test
async def test_receive_from_missing_queue() -> None:
    fake = FakeBackend()
    fake.script = lambda op: Rejected(ErrorCode.QUEUE_NOT_FOUND, "queue 'orders' does not exist")
    async with serve(fake) as client:
        response = await client.post("/v1/queues/orders/receive", json={"wait_s": 5})
        body = await problem(response, 404, "queue_not_found")
    assert body["detail"] == "queue 'orders' does not exist"
    assert fake.wait_calls == []


@async_test
async def test_ack_nack_extend() -> None:
    fake = FakeBackend()
    outcomes = [SettleOutcome.ACKED, SettleOutcome.STALE, SettleOutcome.INVALID]
    async with serve(fake) as client:
        fake.script = lambda op: Settled(outcomes)
        response = await client.post("/v1/queues/q/ack", json={"receipts": ["a", "b", "c"]})
        assert response.status == 200
        assert await response.json() == {
            "results": [
                {"receipt": "a", "outcome": "acked"},
                {"receipt": "b", "outcome": "stale"},
                {"receipt": "c", "outcome": "invalid"},
            ],
            "commit_index": 101,
        }
        fake.script = fake.default_script
        response = await client.post("/v1/queues/q/nack", json={"receipts": ["a"], "delay_s": 2})
        assert (await response.json())["results"] == [{"receipt": "a", "outcome": "nacked"}]
        await client.post("/v1/queues/q/nack", json={"receipts": ["a"]})
        response = await client.post("/v1/queues/q/extend", json={"receipts": ["a"], "visibility_timeout_s": 60})
        assert (await response.json())["results"] == [{"receipt": "a", "outcome": "extended"}]
    assert fake.ops == [
        Ack("q", ["a", "b", "c"]),
        Nack("q", ["a"], 2000),
        Nack("q", ["a"], 0),
        Extend("q", ["a"], 60_000),
    ]


@async_test
async def test_dead_lettered_outcome() -> None:
    fake = FakeBackend()
    fake.script = lambda op: Settled([SettleOutcome.DEAD_LETTERED])
    async with serve(fake) as client:
        response = await client.post("/v1/queues/q/nack", json={"receipts": ["a"]})
        assert (await response.json())["results"][0]["outcome"] == "dead_lettered"


BAD_SETTLES: list[tuple[str, object, str | None]] = [
    ("ack", {}, "receipts"),
    ("ack", {"receipts": []}, "receipts"),
    ("ack", {"receipts": ["r"] * 1001}, "receipts"),
    ("ack", {"receipts": "r"}, "receipts"),
    ("ack", {"receipts": ["r", 5]}, "receipts[1]"),
    ("ack", {"receipts": ["r"], "delay_s": 1}, "delay_s"),
    ("ack", b"", None),
    ("nack", {"receipts": ["r"], "delay_s": 901}, "delay_s"),
    ("nack", {"receipts": ["r"], "delay_s": True}, "delay_s"),
    ("extend", {"receipts": ["r"]}, "visibility_timeout_s"),
    ("extend", {"receipts": ["r"], "visibility_timeout_s": -1}, "visibility_timeout_s"),
    ("extend", {"receipts": ["r"], "visibility_timeout_s": "5"}, "visibility_timeout_s"),
]


@pytest.mark.parametrize(("action", "body", "field"), BAD_SETTLES)
@async_test
async def test_bad_settle_is_400(action: str, body: object, field: str | None) -> None:
    fake = FakeBackend()
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    async with serve(fake) as client:
        response = await client.post(f"/v1/queues/q/{action}", data=data)
        assert (await problem(response, 400, "invalid_request")).get("field") == field
    assert fake.ops == []


@async_test
async def test_receive_attempt_id_is_passed_to_every_poll() -> None:
    fake = FakeBackend()
    async with serve(fake) as client:
        body = {"max_messages": 3, "receive_attempt_id": "worker-7:attempt.1_a", "wait_s": 0.05}
        response = await client.post("/v1/queues/orders/receive", json=body)
        assert response.status == 200
        await client.post("/v1/queues/orders/receive", json={"receive_attempt_id": None})
    polls = fake.ops[:-1]
    assert len(polls) >= 2  # the long poll re-executed the same receive
    assert all(op == Receive("orders", 3, None, "worker-7:attempt.1_a") for op in polls)
    assert fake.ops[-1] == Receive("orders", 1, None, None)


BAD_ATTEMPT_IDS: list[object] = ["", "a" * 129, 7, True, ["a"], "a b", "-a", "a/b", "ü"]


@pytest.mark.parametrize("attempt_id", BAD_ATTEMPT_IDS, ids=repr)
@async_test
async def test_bad_receive_attempt_id_is_400(attempt_id: object) -> None:
    fake = FakeBackend()
    async with serve(fake) as client:
        response = await client.post("/v1/queues/orders/receive", json={"receive_attempt_id": attempt_id})
        body = await problem(response, 400, "invalid_request")
    assert body["field"] == "receive_attempt_id"
    assert fake.ops == []


@async_test
async def test_receive_attempt_id_of_128_characters_is_accepted() -> None:
    fake = FakeBackend()
    async with serve(fake) as client:
        response = await client.post("/v1/queues/orders/receive", json={"receive_attempt_id": "A" * 128})
        assert response.status == 200
    assert fake.ops == [Receive("orders", 1, None, "A" * 128)]


@pytest.mark.parametrize("outcome", list(SettleOutcome), ids=str)
@pytest.mark.parametrize("action", ["ack", "nack", "extend"])
@async_test
async def test_every_settle_outcome_renders(action: str, outcome: SettleOutcome) -> None:
    fake = FakeBackend()
    fake.script = lambda op: Settled([outcome, SettleOutcome.ALREADY_ACKED])
    body = {"receipts": ["a", "b"], **({"visibility_timeout_s": 5} if action == "extend" else {})}
    async with serve(fake) as client:
        response = await client.post(f"/v1/queues/q/{action}", json=body)
        assert response.status == 200
        assert (await response.json())["results"] == [
            {"receipt": "a", "outcome": outcome.value},
            {"receipt": "b", "outcome": "already_acked"},
        ]
