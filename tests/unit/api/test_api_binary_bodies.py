"""Binary bodies: ``body`` or ``body_base64`` on every message that is enqueued (single, batch, transaction and
staged enqueue ops), and ``body_encoding`` on receive. See docs/http-api.md."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from state_machine.commands import Enqueue, StageTxn, Transact, fingerprint, txn_fingerprint
from state_machine.results import Delivery, Received
from tests.unit.api.fakes import NOW_MS, FakeBackend
from tests.unit.api.harness import Client, async_test, problem, serve
from tests.unit.api.machine_backend import MachineBackend

#: Not UTF-8 (every byte value, so lone continuation bytes, 0xff, NUL): only ``body_base64`` can carry it.
NOT_UTF8 = bytes(range(256))


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


async def _json(client: Client, path: str, body: object, status: int) -> dict[str, Any]:
    response = await client.post(path, json=body)
    assert response.status == status, await response.text()
    answer: dict[str, Any] = await response.json()
    return answer


def _enqueued(fake: FakeBackend) -> list[Any]:
    """The messages of every enqueue the fake saw, inside transactions included, in order."""
    messages: list[Any] = []
    for op in fake.ops:
        ops = op.ops if isinstance(op, Transact | StageTxn) else [op]
        messages += [m for sub in ops if isinstance(sub, Enqueue) for m in sub.messages]
    return messages


# --- enqueue: what is stored ---------------------------------------------------------------------------------


@async_test
async def test_body_base64_is_stored_as_the_bytes_it_encodes() -> None:
    fake = FakeBackend()
    async with serve(fake) as client:
        one = {"body_base64": b64(NOT_UTF8), "attributes": {"k": "v"}, "delay_s": 2, "idempotency_key": "k1"}
        await _json(client, "/v1/queues/q/messages", one, 201)
        batch = {"messages": [{"body": "text"}, {"body_base64": b64(b"\x00\xff")}, {"body_base64": ""}]}
        await _json(client, "/v1/queues/q/messages", batch, 201)
    first, *rest = _enqueued(fake)
    assert first.body == NOT_UTF8
    assert first.fingerprint == fingerprint(NOT_UTF8, {"k": "v"}, 2000)
    assert [m.body for m in rest] == [b"text", b"\x00\xff", b""]


@async_test
async def test_body_base64_in_transaction_and_staged_enqueue_ops() -> None:
    fake = FakeBackend()
    messages = [{"body_base64": b64(NOT_UTF8)}, {"body": "é"}]
    async with serve(fake) as client:
        operations = [{"op": "enqueue", "queue": "q", "messages": messages}]
        await _json(client, "/v1/transactions", {"transaction_id": "t1", "operations": operations}, 200)
        await _json(client, "/v1/transactions/t2/operations", {"stage_seq": 1, "operations": operations}, 200)
    assert [m.body for m in _enqueued(fake)] == [NOT_UTF8, "é".encode(), NOT_UTF8, "é".encode()]


@async_test
async def test_the_same_bytes_as_body_or_body_base64_fingerprint_the_same() -> None:
    fake = FakeBackend()
    text = "héllo, wörld"
    async with serve(fake) as client:
        for body in ({"body": text}, {"body_base64": b64(text.encode())}):
            await _json(client, "/v1/queues/q/messages", {**body, "idempotency_key": "k"}, 201)
            operations = [{"op": "enqueue", "queue": "q", "messages": [body]}]
            await _json(client, "/v1/transactions", {"transaction_id": "t", "operations": operations}, 200)
    single_a, txn_a, single_b, txn_b = fake.ops
    assert isinstance(single_a, Enqueue) and isinstance(single_b, Enqueue)
    assert single_a.messages[0].body == single_b.messages[0].body == text.encode()
    assert single_a.messages[0].fingerprint == single_b.messages[0].fingerprint
    assert isinstance(txn_a, Transact) and isinstance(txn_b, Transact)
    # A transaction retried with the other spelling of the same bytes is the same request.
    assert txn_a.fingerprint == txn_b.fingerprint == txn_fingerprint(txn_b.ops)


@async_test
async def test_the_same_bytes_as_body_or_body_base64_are_one_message_for_an_idempotency_key() -> None:
    backend = MachineBackend()
    async with serve(backend) as client:
        assert (await client.put("/v1/queues/q")).status == 201
        first = await _json(client, "/v1/queues/q/messages", {"body": "héllo", "idempotency_key": "k"}, 201)
        again = {"body_base64": b64("héllo".encode()), "idempotency_key": "k"}
        duplicate = await _json(client, "/v1/queues/q/messages", again, 200)
        assert duplicate["duplicate"] is True
        assert (duplicate["message_id"], duplicate["seq"]) == (first["message_id"], first["seq"])
        other = {"body_base64": b64(b"hello"), "idempotency_key": "k"}
        response = await client.post("/v1/queues/q/messages", json=other)
        await problem(response, 409, "idempotency_key_conflict")
        info = await client.get("/v1/queues/q")
        assert (await info.json())["counts"]["ready"] == 1


@async_test
async def test_the_size_limit_is_on_the_decoded_bytes() -> None:
    backend = MachineBackend()
    async with serve(backend) as client:
        assert (await client.put("/v1/queues/q", json={"max_message_bytes": 4})).status == 201
        four = b64(b"\xff" * 4)
        assert len(four) == 8  # the text is over the limit; the bytes are not
        await _json(client, "/v1/queues/q/messages", {"body_base64": four}, 201)
        response = await client.post("/v1/queues/q/messages", json={"body_base64": b64(b"\xff" * 5)})
        body = await problem(response, 413, "message_too_large")
        assert "5 bytes" in body["detail"]


# --- enqueue: what is refused --------------------------------------------------------------------------------

#: (name, a message object, the field the 400 names, relative to the message)
BAD_MESSAGES: list[tuple[str, dict[str, object], str]] = [
    ("both", {"body": "a", "body_base64": "YQ=="}, "body"),
    ("both, body null", {"body": None, "body_base64": "YQ=="}, "body"),
    ("neither", {"attributes": {"k": "v"}}, "body"),
    ("base64 not a string", {"body_base64": 5}, "body_base64"),
    ("base64 null", {"body_base64": None}, "body_base64"),
    ("base64 an array of bytes", {"body_base64": [97]}, "body_base64"),
    ("no padding", {"body_base64": "YQ"}, "body_base64"),
    ("short padding", {"body_base64": "YQ="}, "body_base64"),
    ("too much padding", {"body_base64": "YQ==="}, "body_base64"),
    ("padding after a full quantum", {"body_base64": "YWJj="}, "body_base64"),
    ("leading padding", {"body_base64": "=YWJj"}, "body_base64"),
    ("data after padding", {"body_base64": "YQ==YQ=="}, "body_base64"),
    ("one character too many", {"body_base64": "YWJjZ"}, "body_base64"),
    ("pad bits set", {"body_base64": "YR=="}, "body_base64"),
    ("a space", {"body_base64": "YW Jj"}, "body_base64"),
    ("a trailing newline", {"body_base64": "YWJj\n"}, "body_base64"),
    ("MIME line breaks", {"body_base64": "YWJj\r\nZGVm"}, "body_base64"),
    ("URL-safe alphabet", {"body_base64": "-_-_"}, "body_base64"),
    ("non-ASCII", {"body_base64": "YWJjé==="}, "body_base64"),
    ("non-ASCII digit", {"body_base64": "YWJ\u0661"}, "body_base64"),
]


def _single(message: dict[str, object]) -> tuple[str, dict[str, object], str]:
    return "/v1/queues/q/messages", message, ""


def _batch(message: dict[str, object]) -> tuple[str, dict[str, object], str]:
    return "/v1/queues/q/messages", {"messages": [{"body": "ok"}, message]}, "messages[1]."


def _enqueue_ops(message: dict[str, object]) -> list[dict[str, object]]:
    ok: dict[str, object] = {"op": "enqueue", "queue": "q", "messages": [{"body_base64": "b2s="}]}
    return [ok, {"op": "enqueue", "queue": "q", "messages": [{"body": "ok"}, message]}]


def _transaction(message: dict[str, object]) -> tuple[str, dict[str, object], str]:
    return (
        "/v1/transactions",
        {"transaction_id": "t1", "operations": _enqueue_ops(message)},
        "operations[1].messages[1].",
    )


def _staged(message: dict[str, object]) -> tuple[str, dict[str, object], str]:
    request = {"stage_seq": 1, "operations": _enqueue_ops(message)}
    return "/v1/transactions/t1/operations", request, "operations[1].messages[1]."


PLACES = {"single": _single, "batch": _batch, "transaction": _transaction, "staged": _staged}


@pytest.mark.parametrize("place", PLACES)
@pytest.mark.parametrize(("message", "field"), [c[1:] for c in BAD_MESSAGES], ids=[c[0] for c in BAD_MESSAGES])
@async_test
async def test_a_bad_body_is_400_naming_the_field_and_changes_nothing(
    place: str, message: dict[str, object], field: str
) -> None:
    path, request, prefix = PLACES[place](message)
    fake = FakeBackend()
    async with serve(fake) as client:
        response = await client.post(path, data=json.dumps(request).encode())
        body = await problem(response, 400, "invalid_request")
    assert body["field"] == prefix + field
    assert body["detail"].startswith(f"{prefix}{field}: ")
    assert fake.ops == []


# --- receive -------------------------------------------------------------------------------------------------


def _delivery(body: bytes) -> Delivery:
    return Delivery(
        message_id="m1",
        seq=7,
        body=body,
        attributes={"a": "b"},
        receipt="r1",
        delivery_count=1,
        enqueued_at_ms=NOW_MS,
        lease_expires_at_ms=NOW_MS + 30_000,
    )


@pytest.mark.parametrize(
    ("request_body", "key", "value"),
    [
        ({}, "body", "ü\ufffd\x00"),
        ({"body_encoding": "text"}, "body", "ü\ufffd\x00"),
        ({"body_encoding": "base64"}, "body_base64", b64("ü".encode() + b"\xff\x00")),
    ],
    ids=["default", "text", "base64"],
)
@async_test
async def test_receive_renders_the_body_in_the_encoding_asked_for(
    request_body: dict[str, object], key: str, value: str
) -> None:
    fake = FakeBackend()
    fake.script = lambda op: Received([_delivery("ü".encode() + b"\xff\x00")])
    async with serve(fake) as client:
        [message] = (await _json(client, "/v1/queues/q/receive", request_body, 200))["messages"]
    assert message[key] == value
    assert list(message) == [
        "message_id",
        "seq",
        key,
        "attributes",
        "receipt",
        "delivery_count",
        "enqueued_at",
        "enqueued_at_ms",
        "lease_expires_at",
        "lease_expires_at_ms",
    ]


@async_test
async def test_bytes_that_are_not_utf8_round_trip_exactly_through_base64() -> None:
    backend = MachineBackend()
    async with serve(backend) as client:
        assert (await client.put("/v1/queues/q")).status == 201
        batch = {"messages": [{"body_base64": b64(NOT_UTF8)}, {"body": "héllo"}]}
        await _json(client, "/v1/queues/q/messages", batch, 201)
        receive = {"max_messages": 2, "body_encoding": "base64"}
        received = (await _json(client, "/v1/queues/q/receive", receive, 200))["messages"]
        assert [base64.b64decode(m["body_base64"], validate=True) for m in received] == [NOT_UTF8, "héllo".encode()]
        assert all("body" not in m for m in received)
        nack = {"receipts": [m["receipt"] for m in received]}
        await _json(client, "/v1/queues/q/nack", nack, 200)
        as_text = await _json(client, "/v1/queues/q/receive", {"max_messages": 2, "body_encoding": "text"}, 200)
        assert [m["body"] for m in as_text["messages"]] == [NOT_UTF8.decode("utf-8", errors="replace"), "héllo"]
        assert all("body_base64" not in m for m in as_text["messages"])
