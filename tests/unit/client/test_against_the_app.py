"""The real ``AsyncClient`` against the real app (``api.create_app`` over the in-memory state machine): no drift.

The client's other tests run against a fake server whose answers are written from docs/http-api.md; this one
checks the client against what the server actually answers. Every operation runs once, every typed result is
decoded from the real answer, and three kinds of check guard against the two sides drifting apart:

- every route in the app's router is exercised by the client (the probes and the digest included), so a new route
  cannot go without client coverage;
- every field of every answer (success bodies and problem documents) is one the client's model of that answer
  declares, so a field the server adds cannot be silently dropped by the client;
- every problem code the server can answer maps to its own error class.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import msgspec
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from api import create_app
from api.problems import ProblemCode
from raft_queue_client import (
    AckOp,
    AsyncClient,
    ClusterStatus,
    CreateQueueResult,
    EnqueueOp,
    EnqueueOpResult,
    InvalidRequest,
    NackOp,
    OutgoingMessage,
    QueueConfig,
    QueueExists,
    QueueInfo,
    QueueInUse,
    QueueNotFound,
    Readiness,
    ReceivedMessage,
    SettleOpResult,
    SettleOutcome,
    StateDigest,
    TransactionAborted,
    TransactionNotFound,
    TransactionOp,
    TransactionState,
    wire,
)
from raft_queue_client.errors import CODE_TO_ERROR, ApiError
from tests.unit.api.machine_backend import MachineBackend

from .support import fast_client, run

#: The client's model of each route's success body (``POST .../messages`` answers one of two, by its shape). Every
#: route the router serves is here, and the client exercises every one.
SUCCESS_MODELS: dict[tuple[str, str], type[Any]] = {
    ("GET", "/healthz"): wire.Health,
    ("GET", "/readyz"): wire.Ready,
    ("GET", "/v1/cluster"): ClusterStatus,
    ("GET", "/v1/cluster/digest"): StateDigest,
    ("GET", "/v1/queues"): wire.QueueList,
    ("PUT", "/v1/queues/{queue}"): CreateQueueResult,
    ("GET", "/v1/queues/{queue}"): QueueInfo,
    ("DELETE", "/v1/queues/{queue}"): wire.Deleted,
    ("POST", "/v1/queues/{queue}/receive"): wire.Received,
    ("POST", "/v1/queues/{queue}/ack"): wire.Settled,
    ("POST", "/v1/queues/{queue}/nack"): wire.Settled,
    ("POST", "/v1/queues/{queue}/extend"): wire.Settled,
    ("POST", "/v1/transactions"): wire.TxnOutcome,
    ("PUT", "/v1/transactions/{transaction_id}"): wire.TxnOutcome,
    ("GET", "/v1/transactions/{transaction_id}"): wire.TxnOutcome,
    ("POST", "/v1/transactions/{transaction_id}/operations"): wire.TxnOutcome,
    ("POST", "/v1/transactions/{transaction_id}/commit"): wire.TxnOutcome,
    ("POST", "/v1/transactions/{transaction_id}/abort"): wire.TxnOutcome,
}


@dataclass(frozen=True)
class Exchange:
    """One request the app served: its route (method, canonical path), the answer's status and body."""

    route: tuple[str, str]
    status: int
    body: bytes


class SelfLeaderBackend(MachineBackend):
    """The in-memory backend as the leader at the URL it is served on (the client follows the leader URL the
    app advertises, so it must be this server's). ``ready = False`` makes it say it is still catching up."""

    url = ""
    ready = True

    def cluster_status(self) -> Any:
        status = super().cluster_status()
        members = tuple(msgspec.structs.replace(m, http_url=self.url) for m in status.members)
        return msgspec.structs.replace(status, leader_url=self.url, members=members, ready=self.ready)


@dataclass
class Served:
    app: web.Application
    backend: SelfLeaderBackend
    exchanges: list[Exchange] = field(default_factory=list)


def app_routes(app: web.Application) -> set[tuple[str, str]]:
    """Every (method, canonical path) the app's router serves (HEAD is aiohttp's automatic twin of GET)."""
    return {
        (route.method, route.resource.canonical)
        for route in app.router.routes()
        if route.resource is not None and route.method != "HEAD"
    }


@asynccontextmanager
async def served() -> AsyncIterator[tuple[AsyncClient, Served]]:
    """The app on 127.0.0.1 with an outermost middleware recording each exchange, and a client for it."""
    backend = SelfLeaderBackend()
    app = create_app(backend)
    record = Served(app, backend)

    @web.middleware
    async def recorder(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        response = await handler(request)
        resource = request.match_info.route.resource
        if resource is not None:
            body = response.body if isinstance(response, web.Response) else None
            assert isinstance(body, bytes), f"{request.method} {request.path}: not a buffered JSON answer"
            record.exchanges.append(Exchange((request.method, resource.canonical), response.status, body))
        return response

    app.middlewares.insert(0, recorder)
    async with TestServer(app, host="127.0.0.1") as server:
        backend.url = str(server.make_url("")).rstrip("/")
        async with fast_client(backend.url) as client:
            yield client, record


def unknown_fields(value: object, kind: msgspec.inspect.Type, at: str = "") -> list[str]:
    """The paths of the fields in ``value`` (decoded JSON) that the client's type ``kind`` does not declare."""
    if isinstance(kind, msgspec.inspect.StructType):
        assert isinstance(value, dict), f"{at or 'body'}: {value!r} is not an object"
        declared = {f.encode_name: f for f in kind.fields}
        tag = kind.tag_field
        missing = [f"{at}.{k}".lstrip(".") for k in value if k not in declared and k != tag]
        return missing + [
            path for k, v in value.items() if k in declared for path in unknown_fields(v, declared[k].type, f"{at}.{k}")
        ]
    if isinstance(kind, msgspec.inspect.UnionType):
        if value is None:
            return []
        candidates = [t for t in kind.types if not isinstance(t, msgspec.inspect.NoneType)]
        structs = [t for t in candidates if isinstance(t, msgspec.inspect.StructType)]
        if isinstance(value, dict) and structs:
            tagged = [t for t in structs if t.tag_field is not None and value.get(t.tag_field) == t.tag]
            return unknown_fields(value, (tagged or structs)[0], at)
        others = [t for t in candidates if not isinstance(t, msgspec.inspect.StructType)]
        return min((unknown_fields(value, t, at) for t in others), key=len, default=[])
    if isinstance(kind, msgspec.inspect.ListType | msgspec.inspect.VarTupleType):
        assert isinstance(value, list)
        return [path for n, item in enumerate(value) for path in unknown_fields(item, kind.item_type, f"{at}[{n}]")]
    if isinstance(kind, msgspec.inspect.DictType):
        assert isinstance(value, dict)
        return [path for k, v in value.items() for path in unknown_fields(v, kind.value_type, f"{at}.{k}")]
    return []


def model_of(exchange: Exchange, document: object) -> type[Any]:
    if exchange.status >= 400:
        return wire.Problem
    if exchange.route == ("POST", "/v1/queues/{queue}/messages"):
        return wire.BatchEnqueued if isinstance(document, dict) and "messages" in document else wire.Enqueued
    return SUCCESS_MODELS[exchange.route]


async def every_operation(client: AsyncClient, backend: SelfLeaderBackend) -> None:
    """Each client operation once, with its typed result checked against what was done."""
    config = await queue_operations(client)
    third = await message_operations(client, config)
    await transaction_operations(client, third)
    assert (await client.delete_queue("settlements")).commit_index is not None
    with pytest.raises(QueueInUse):
        await client.delete_queue("orders-dlq")
    await node_questions(client, backend)


async def queue_operations(client: AsyncClient) -> QueueConfig:
    status = await client.cluster()
    assert status.role == "leader" and status.leader_url == client.urls[0] and status.has_quorum

    dlq = await client.create_queue("orders-dlq")
    created = await client.create_queue(
        "orders", visibility_timeout_s=30, max_deliveries=2, dead_letter_queue="orders-dlq", max_length=100
    )
    assert dlq.created and created.created and created.commit_index > dlq.commit_index
    config = created.queue.config
    assert (config.visibility_timeout_s, config.max_deliveries, config.max_length) == (30, 2, 100)
    assert config.dead_letter_queue == "orders-dlq"
    assert not (await client.create_queue("orders", visibility_timeout_s=30, max_deliveries=2,
                                          dead_letter_queue="orders-dlq", max_length=100)).created  # fmt: skip
    await client.create_queue("settlements")
    return config


async def message_operations(client: AsyncClient, config: QueueConfig) -> ReceivedMessage:
    """Enqueue (single, duplicate, batch), read the queue, receive and settle; returns a still leased message."""
    one = await client.enqueue("orders", "first", attributes={"kind": "order"}, idempotency_key="order-1")
    again = await client.enqueue("orders", "first", attributes={"kind": "order"}, idempotency_key="order-1")
    assert not one.duplicate and again.duplicate and again.message_id == one.message_id
    assert again.idempotency_key == "order-1"
    batch = await client.enqueue_batch(
        "orders", [OutgoingMessage("second"), OutgoingMessage("third", idempotency_key="order-3")]
    )
    assert [m.seq for m in batch.messages] == [one.seq + 1, one.seq + 2]
    assert batch.messages[1].idempotency_key == "order-3" and not any(m.duplicate for m in batch.messages)

    info = await client.get_queue("orders")
    assert info.counts.ready == 3 and info.counts.enqueued_total == 3 and info.config == config
    assert [q.name for q in await client.list_queues(consistency="local")] == ["orders", "orders-dlq", "settlements"]

    first, second, third = await client.receive("orders", max_messages=3, visibility_timeout_s=20)
    assert (first.body, second.body, third.body) == ("first", "second", "third")
    assert first.message_id == one.message_id and first.attributes == {"kind": "order"}
    assert first.delivery_count == 1 and first.lease_expires_at_ms == first.enqueued_at_ms + 20_000
    assert [r.outcome for r in await client.ack("orders", first)] == [SettleOutcome.ACKED]
    assert [r.outcome for r in await client.ack("orders", first)] == [SettleOutcome.ALREADY_ACKED]
    assert [r.outcome for r in await client.nack("orders", second, delay_s=0)] == [SettleOutcome.NACKED]
    extended = await client.extend("orders", [third, "not-a-receipt"], visibility_timeout_s=60)
    assert [r.outcome for r in extended] == [SettleOutcome.EXTENDED, SettleOutcome.INVALID]
    assert extended[0].receipt == third.receipt
    return third


async def transaction_operations(client: AsyncClient, third: ReceivedMessage) -> None:
    # A one-shot transaction: ack the input and publish the output, atomically; the same ID repeats the outcome.
    [redelivered] = await client.receive("orders")
    assert redelivered.body == "second" and redelivered.delivery_count == 2
    ops: list[TransactionOp] = [AckOp("orders", redelivered), EnqueueOp("settlements", ["settle second"])]
    committed = await client.transact("settle-2", ops)
    assert not committed.duplicate and committed.transaction_id == "settle-2"
    assert committed.commit_index == committed.decided_index
    acked, published = committed.results
    assert isinstance(acked, SettleOpResult) and acked.outcomes == (SettleOutcome.ACKED,)
    assert isinstance(published, EnqueueOpResult) and len(published.messages) == 1
    repeat = await client.transact("settle-2", ops)
    assert repeat.duplicate and repeat.decided_index == committed.decided_index
    assert repeat.commit_index is not None and committed.commit_index is not None
    assert repeat.commit_index > committed.commit_index

    # Interactive: begin, stage, commit; read it back; and one aborted.
    txn = await client.begin_transaction("settle-3", timeout_s=30)
    assert txn.info is not None and txn.info.status is TransactionState.PENDING and txn.info.expires_at is not None
    staged = await txn.stage([NackOp("orders", third), EnqueueOp("settlements", [OutgoingMessage("settle third")])])
    assert staged.staged_ops == 2
    done = await txn.commit()
    assert [type(r) for r in done.results] == [SettleOpResult, EnqueueOpResult]
    looked_up = await client.get_transaction("settle-3")
    assert looked_up.status is TransactionState.COMMITTED and looked_up.decided_index == done.decided_index
    assert looked_up.commit_index is None and staged.commit_index is not None  # a read; a write
    assert len(looked_up.results) == 2
    dropped = await client.begin_transaction("dropped")
    aborted = await dropped.abort()
    assert aborted.status is TransactionState.ABORTED and aborted.reason == "aborted"

    # A transaction that cannot apply: the problem document carries why.
    with pytest.raises(TransactionAborted) as refused:
        await client.transact("bad", [EnqueueOp("missing", ["x"])])
    assert refused.value.reason == "preconditions" and refused.value.transaction_id == "bad"
    assert refused.value.decided_index is not None and not refused.value.duplicate
    assert [(f.op, f.code) for f in refused.value.failures] == [(0, "queue_not_found")]


async def node_questions(client: AsyncClient, backend: SelfLeaderBackend) -> None:
    """The probes and the digest: the node's own answers, ready and not."""
    node = client.urls[0]
    assert await client.healthy() and await client.healthy(node)
    index = backend.index
    assert await client.readiness(node) == Readiness(
        ready=True, node_url=node, node_id="n1", leader_id="n1", applied_index=index, commit_index=index
    )
    digest = backend.state_digest()
    assert await client.state_digest() == StateDigest("n1", digest.applied_index, digest.digest, digest.keys)
    assert digest.applied_index == index and digest.keys > 0
    backend.ready = False
    try:
        not_ready = await client.readiness()
    finally:
        backend.ready = True
    assert not_ready == Readiness(
        ready=False, node_url=node, detail=f"still catching up with the leader (applied {index}, committed {index})"
    )


async def problems(client: AsyncClient) -> None:
    """The problem documents of a few errors decode into their typed errors, with what the server said."""
    with pytest.raises(QueueNotFound) as not_found:
        await client.get_queue("missing")
    with pytest.raises(QueueExists) as exists:
        await client.create_queue("orders", visibility_timeout_s=99)
    with pytest.raises(InvalidRequest) as invalid:
        await client.create_queue("fresh", visibility_timeout_s=-1)
    with pytest.raises(TransactionNotFound) as unknown_txn:
        await client.get_transaction("never-begun")
    for error, status, code in [
        (not_found.value, 404, "queue_not_found"),
        (exists.value, 409, "queue_exists"),
        (invalid.value, 400, "invalid_request"),
        (unknown_txn.value, 404, "transaction_not_found"),
    ]:
        assert (error.status, error.code, error.retry) == (status, code, "never")
        assert error.detail and error.title and error.node_url == client.urls[0]
    assert invalid.value.field == "visibility_timeout_s"


def test_every_route_is_the_clients_and_every_answer_decodes_into_its_model() -> None:
    async def body() -> None:
        async with served() as (client, record):
            await every_operation(client, record.backend)
            await problems(client)
        routes = app_routes(record.app)
        exercised = {e.route for e in record.exchanges}
        assert routes - exercised == set(), "routes the client does not exercise"
        assert set(SUCCESS_MODELS) | {("POST", "/v1/queues/{queue}/messages")} == routes
        statuses = {e.status for e in record.exchanges}
        assert {200, 201, 400, 404, 409, 503} <= statuses
        for exchange in record.exchanges:
            document = msgspec.json.decode(exchange.body)
            model = model_of(exchange, document)
            msgspec.json.decode(exchange.body, type=model)  # the client's model of this answer decodes it
            extra = unknown_fields(document, msgspec.inspect.type_info(model))
            assert extra == [], f"{exchange.route} {exchange.status}: fields the client does not know: {extra}"

    run(body())


def test_every_problem_code_the_server_answers_has_its_error_class() -> None:
    assert {code.value for code in ProblemCode} == set(CODE_TO_ERROR)
    assert all(issubclass(cls, ApiError) for cls in CODE_TO_ERROR.values())
