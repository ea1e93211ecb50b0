"""``POST /v1/queues/{queue}/messages``: single and batch enqueue, idempotency keys, validation."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from api import parse
from api.problems import Problem
from state_machine.commands import Command, Enqueue, fingerprint
from state_machine.results import Enqueued, EnqueuedMessage, ErrorCode, Rejected, Result
from tests.unit.api.fakes import FakeBackend
from tests.unit.api.harness import async_test, problem, serve


def _ids() -> Callable[[], str]:
    counter = iter(range(1000))
    return lambda: f"id{next(counter)}"


def _enqueue_op(fake: FakeBackend) -> Enqueue:
    assert len(fake.ops) == 1
    op = fake.ops[0]
    assert isinstance(op, Enqueue)
    return op


@async_test
async def test_enqueue_one_message() -> None:
    fake = FakeBackend()
    async with serve(fake, new_message_id=_ids()) as client:
        response = await client.post(
            "/v1/queues/orders/messages",
            json={"body": "héllo", "attributes": {"k": "v"}, "delay_s": 1.5, "idempotency_key": "key-1"},
        )
        assert response.status == 201
        assert await response.json() == {
            "message_id": "id0",
            "seq": 1000,
            "duplicate": False,
            "commit_index": 101,
        }
    op = _enqueue_op(fake)
    assert op.queue == "orders"
    [m] = op.messages
    assert m.message_id == "id0"
    assert m.body == "héllo".encode()
    assert m.attributes == {"k": "v"}
    assert m.delay_ms == 1500
    assert m.idempotency_key == "key-1"
    assert m.fingerprint == fingerprint("héllo".encode(), {"k": "v"}, 1500)


@async_test
async def test_enqueue_defaults_and_real_ids() -> None:
    fake = FakeBackend()
    async with serve(fake) as client:
        assert (await client.post("/v1/queues/orders/messages", json={"body": ""})).status == 201
        assert (await client.post("/v1/queues/orders/messages", json={"body": "x"})).status == 201
    first, second = (m for op in fake.ops if isinstance(op, Enqueue) for m in op.messages)
    assert (first.attributes, first.delay_ms, first.idempotency_key) == ({}, 0, None)
    assert len(first.message_id) == 32 and first.message_id < second.message_id


@async_test
async def test_enqueue_batch_and_duplicates() -> None:
    fake = FakeBackend()
    async with serve(fake, new_message_id=_ids()) as client:
        batch = {"messages": [{"body": "a", "idempotency_key": "k1"}, {"body": "b"}]}
        response = await client.post("/v1/queues/orders/messages", json=batch)
        assert response.status == 201
        assert await response.json() == {
            "messages": [
                {"message_id": "id0", "seq": 1000, "duplicate": False},
                {"message_id": "id1", "seq": 1001, "duplicate": False},
            ],
            "commit_index": 101,
        }

        def mixed(op: Command) -> Result:
            return Enqueued([EnqueuedMessage("old", 1, duplicate=True), EnqueuedMessage("new", 2)])

        fake.script = mixed
        assert (await client.post("/v1/queues/orders/messages", json=batch)).status == 201

        def all_duplicates(op: Command) -> Result:
            assert isinstance(op, Enqueue)
            return Enqueued([EnqueuedMessage(f"old{i}", i, duplicate=True) for i in range(len(op.messages))])

        fake.script = all_duplicates
        response = await client.post("/v1/queues/orders/messages", json=batch)
        assert response.status == 200
        assert [m["duplicate"] for m in (await response.json())["messages"]] == [True, True]
        single = await client.post("/v1/queues/orders/messages", json={"body": "a", "idempotency_key": "k"})
        assert single.status == 200
        assert await single.json() == {"message_id": "old0", "seq": 0, "duplicate": True, "commit_index": 104}
        one_batch = await client.post("/v1/queues/orders/messages", json={"messages": [{"body": "a"}]})
        assert one_batch.status == 200
        assert "messages" in await one_batch.json()


@async_test
async def test_batch_of_1000_is_accepted() -> None:
    fake = FakeBackend()
    async with serve(fake) as client:
        batch = {"messages": [{"body": str(i)} for i in range(1000)]}
        assert (await client.post("/v1/queues/orders/messages", json=batch)).status == 201
    assert len(_enqueue_op(fake).messages) == 1000


@async_test
async def test_idempotency_key_header() -> None:
    fake = FakeBackend()
    async with serve(fake) as client:
        headers = {"Idempotency-Key": "h-1"}
        response = await client.post("/v1/queues/orders/messages", json={"body": "x"}, headers=headers)
        assert response.status == 201
        same = {"body": "x", "idempotency_key": "h-1"}
        assert (await client.post("/v1/queues/orders/messages", json=same, headers=headers)).status == 201
    assert [m.idempotency_key for op in fake.ops if isinstance(op, Enqueue) for m in op.messages] == [
        "h-1",
        "h-1",
    ]


def _long(n: int) -> str:
    return "x" * n


BAD_ENQUEUES: list[tuple[str, object, dict[str, str], str | None]] = [
    ("not json", b"{body", {}, None),
    ("not an object", b"[1]", {}, None),
    ("empty body", b"", {}, None),
    ("null", b"null", {}, None),
    ("missing body", {}, {}, "body"),
    ("unknown field", {"body": "x", "bdy": "y"}, {}, "bdy"),
    ("body not a string", {"body": 5}, {}, "body"),
    ("body bytes-ish", {"body": ["x"]}, {}, "body"),
    ("attributes not object", {"body": "x", "attributes": ["k"]}, {}, "attributes"),
    ("attribute value not str", {"body": "x", "attributes": {"k": 1}}, {}, "attributes.k"),
    ("attribute value too long", {"body": "x", "attributes": {"k": _long(1025)}}, {}, "attributes.k"),
    ("attribute key empty", {"body": "x", "attributes": {"": "v"}}, {}, "attributes"),
    ("attribute key too long", {"body": "x", "attributes": {_long(129): "v"}}, {}, "attributes"),
    ("33 attributes", {"body": "x", "attributes": {str(i): "v" for i in range(33)}}, {}, "attributes"),
    ("delay bool", {"body": "x", "delay_s": True}, {}, "delay_s"),
    ("delay string", {"body": "x", "delay_s": "1"}, {}, "delay_s"),
    ("delay negative", {"body": "x", "delay_s": -1}, {}, "delay_s"),
    ("delay too long", {"body": "x", "delay_s": 900.001}, {}, "delay_s"),
    ("key empty", {"body": "x", "idempotency_key": ""}, {}, "idempotency_key"),
    ("key too long", {"body": "x", "idempotency_key": _long(257)}, {}, "idempotency_key"),
    ("key number", {"body": "x", "idempotency_key": 7}, {}, "idempotency_key"),
    (
        "header and key differ",
        {"body": "x", "idempotency_key": "a"},
        {"Idempotency-Key": "b"},
        "idempotency_key",
    ),
    ("header too long", {"body": "x"}, {"Idempotency-Key": _long(257)}, "Idempotency-Key"),
    ("header on a batch", {"messages": [{"body": "x"}]}, {"Idempotency-Key": "k"}, "Idempotency-Key"),
    ("batch of 0", {"messages": []}, {}, "messages"),
    ("batch of 1001", {"messages": [{"body": "x"}] * 1001}, {}, "messages"),
    ("batch not a list", {"messages": {"body": "x"}}, {}, "messages"),
    ("batch item not object", {"messages": [{"body": "x"}, "y"]}, {}, "messages[1]"),
    ("batch plus body", {"messages": [{"body": "x"}], "body": "y"}, {}, "body"),
    ("batch item unknown field", {"messages": [{"body": "x"}, {"body": "x", "k": 1}]}, {}, "messages[1].k"),
    ("batch item bad body", {"messages": [{"body": "x"}] * 3 + [{"body": None}]}, {}, "messages[3].body"),
    (
        "batch item attributes",
        {"messages": [{"body": "x"}] * 3 + [{"body": "x", "attributes": {str(i): "" for i in range(40)}}]},
        {},
        "messages[3].attributes",
    ),
    ("batch item delay NaN-ish", {"messages": [{"body": "x", "delay_s": None}]}, {}, "messages[0].delay_s"),
]


@pytest.mark.parametrize(
    ("body", "headers", "field"), [case[1:] for case in BAD_ENQUEUES], ids=[case[0] for case in BAD_ENQUEUES]
)
@async_test
async def test_bad_enqueue_is_400_and_changes_nothing(body: object, headers: dict[str, str], field: str | None) -> None:
    fake = FakeBackend()
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    async with serve(fake) as client:
        response = await client.post("/v1/queues/orders/messages", data=data, headers=headers)
        result = await problem(response, 400, "invalid_request")
    assert result.get("field") == field
    if field is not None:
        assert result["detail"].startswith(field + ": ")
    assert fake.ops == []


@pytest.mark.parametrize(
    ("code", "status"),
    [
        (ErrorCode.QUEUE_NOT_FOUND, 404),
        (ErrorCode.IDEMPOTENCY_KEY_CONFLICT, 409),
        (ErrorCode.MESSAGE_TOO_LARGE, 413),
        (ErrorCode.QUEUE_FULL, 429),
    ],
)
@async_test
async def test_enqueue_rejections(code: ErrorCode, status: int) -> None:
    fake = FakeBackend()
    fake.script = lambda op: Rejected(code, "rejected", field="body" if status == 413 else None)
    async with serve(fake) as client:
        response = await client.post("/v1/queues/orders/messages", json={"body": "x"})
        body = await problem(response, status, str(code))
    if code is ErrorCode.QUEUE_FULL:
        assert response.headers["Retry-After"] == "1"
        assert body["retry"] == "safe"
    else:
        assert body["retry"] == "never"
    if status == 413:
        assert body["field"] == "body"


@pytest.mark.parametrize("key", ["caf\udce9", "\udcff\udcfe", "tab\there", "k\x7f"])
def test_an_idempotency_key_header_that_is_not_printable_ascii_is_400(key: str) -> None:
    """aiohttp hands raw non-UTF-8 header bytes over as surrogates (``caf\\xe9`` becomes ``caf\\udce9``). Such a key
    could not be encoded into the log entry, and the failure took every other operation of its group commit with
    it (false 503 outcome_unknown after 10 s for the innocent requests). It is refused at the edge."""
    with pytest.raises(Problem) as refused:
        parse.enqueue({"body": "x"}, key)
    assert (refused.value.status, refused.value.field) == (400, "Idempotency-Key")
