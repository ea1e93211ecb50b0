"""``/v1/transactions``: parsing, commands and rendering against the scriptable fake. The real semantics
(records, duplicates, conflicts, timeouts) are in ``test_transactions_machine.py``."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from state_machine.commands import (
    AbortTxn,
    Ack,
    BeginTxn,
    Command,
    CommitTxn,
    Enqueue,
    Extend,
    Nack,
    StageTxn,
    Transact,
    fingerprint,
    txn_fingerprint,
)
from state_machine.contract import NoLeader, OutcomeUnknown
from state_machine.results import (
    Enqueued,
    EnqueuedMessage,
    ErrorCode,
    Rejected,
    Result,
    Settled,
    SettleOutcome,
    TxnFailure,
    TxnOutcome,
    TxnStatus,
)
from tests.unit.api.fakes import NOW_MS, RETENTION_MS, FakeBackend
from tests.unit.api.harness import async_test, problem, serve

EXPIRES_MS = NOW_MS + RETENTION_MS
EXPIRES = "2024-05-08T12:00:00.123Z"

OPERATIONS: list[dict[str, object]] = [
    {"op": "enqueue", "queue": "out", "messages": [{"body": "a", "idempotency_key": "k1"}, {"body": "b"}]},
    {"op": "ack", "queue": "in", "receipts": ["r1", "r2"]},
    {"op": "nack", "queue": "in", "receipts": ["r3"], "delay_s": 2.5},
    {"op": "extend", "queue": "in", "receipts": ["r4"], "visibility_timeout_s": 60},
]


def _ids() -> Callable[[], str]:
    counter = iter(range(1000))
    return lambda: f"id{next(counter)}"


def _only(fake: FakeBackend) -> Command:
    [op] = fake.ops
    return op


def _body(data: object) -> bytes:
    return data if isinstance(data, bytes) else json.dumps(data).encode()


def _outcome(status: TxnStatus, **fields: Any) -> TxnOutcome:
    return TxnOutcome("t1", status, **fields)


# --- POST /v1/transactions ----------------------------------------------------------------------------------


@async_test
async def test_transact_builds_the_command_and_renders_the_commit() -> None:
    fake = FakeBackend()
    fake.retention_ms = 3_600_000
    async with serve(fake, new_message_id=_ids()) as client:
        response = await client.post("/v1/transactions", json={"transaction_id": "t1", "operations": OPERATIONS})
        assert response.status == 200
        body = await response.json()
    op = _only(fake)
    assert isinstance(op, Transact)
    enqueue = op.ops[0]
    assert isinstance(enqueue, Enqueue)
    assert [m.message_id for m in enqueue.messages] == ["id0", "id1"]
    assert [m.idempotency_key for m in enqueue.messages] == ["k1", None]
    assert enqueue.messages[0].fingerprint == fingerprint(b"a", {}, 0)
    assert op.ops[1:] == [Ack("in", ["r1", "r2"]), Nack("in", ["r3"], 2500), Extend("in", ["r4"], 60_000)]
    assert op.transaction_id == "t1"
    assert op.fingerprint == txn_fingerprint(op.ops)
    assert op.retention_ms == 3_600_000
    assert body == {
        "transaction_id": "t1",
        "status": "committed",
        "decided_index": 101,
        "duplicate": False,
        "staged_ops": 0,
        "expires_at": EXPIRES,
        "expires_at_ms": EXPIRES_MS,
        "results": [
            {
                "op": "enqueue",
                "messages": [
                    {"message_id": "id0", "seq": 1000, "duplicate": False},
                    {"message_id": "id1", "seq": 1001, "duplicate": False},
                ],
            },
            {"op": "ack", "outcomes": ["acked", "acked"]},
            {"op": "nack", "outcomes": ["nacked"]},
            {"op": "extend", "outcomes": ["extended"]},
        ],
        "reason": None,
        "failures": [],
        "commit_index": 101,
    }


@async_test
async def test_fingerprint_ignores_message_ids_so_a_retry_matches() -> None:
    fake = FakeBackend()
    request = {"transaction_id": "t1", "operations": OPERATIONS}
    async with serve(fake) as client:
        assert (await client.post("/v1/transactions", json=request)).status == 200
        assert (await client.post("/v1/transactions", json=request)).status == 200
    first, second = fake.ops
    assert isinstance(first, Transact) and isinstance(second, Transact)
    assert first.ops != second.ops  # new message ids
    assert first.fingerprint == second.fingerprint
    changed = {"transaction_id": "t1", "operations": [*OPERATIONS[:3], {**OPERATIONS[3], "visibility_timeout_s": 61}]}
    async with serve(fake) as client:
        assert (await client.post("/v1/transactions", json=changed)).status == 200
    assert isinstance(fake.ops[2], Transact) and fake.ops[2].fingerprint != first.fingerprint


@async_test
async def test_transact_duplicate_is_200_with_the_recorded_index() -> None:
    fake = FakeBackend()
    recorded = _outcome(
        TxnStatus.COMMITTED,
        decided_index=7,
        results=[Enqueued([EnqueuedMessage("orig", 3, duplicate=False)]), Settled([SettleOutcome.ACKED])],
        expires_at_ms=EXPIRES_MS,
        duplicate=True,
    )
    fake.script = lambda op: recorded
    request = {"transaction_id": "t1", "operations": OPERATIONS[:2]}
    async with serve(fake) as client:
        response = await client.post("/v1/transactions", json=request)
        assert response.status == 200
        body = await response.json()
    assert body["duplicate"] is True
    assert body["decided_index"] == 7
    assert body["commit_index"] == 101
    assert body["results"][0]["messages"] == [{"message_id": "orig", "seq": 3, "duplicate": False}]


@async_test
async def test_transact_aborted_is_409_with_failures_naming_request_fields() -> None:
    fake = FakeBackend()
    fake.script = lambda op: _outcome(
        TxnStatus.ABORTED,
        reason="preconditions",
        failures=[
            TxnFailure(0, "queue_not_found", "queue 'out' does not exist", "ops[0]"),
            TxnFailure(1, "stale", "the delivery expired", "ops[1].receipts[1]"),
            TxnFailure(0, "invalid_argument", "too large", "ops[0].messages[0].body"),
            TxnFailure(3, "invalid", "not a receipt of this queue", "receipts[0]"),
            TxnFailure(2, "queue_full", "queue 'in' is full"),
        ],
    )
    async with serve(fake) as client:
        response = await client.post("/v1/transactions", json={"transaction_id": "t1", "operations": OPERATIONS})
        body = await problem(response, 409, "transaction_aborted")
    assert body["retry"] == "never"
    assert body["transaction_id"] == "t1"
    assert body["reason"] == "preconditions"
    assert body["decided_index"] is None
    assert body["duplicate"] is False
    assert "expires_at" not in body and "results" not in body
    assert body["failures"] == [
        {"op": 0, "code": "queue_not_found", "detail": "queue 'out' does not exist", "field": "operations[0]"},
        {"op": 1, "code": "stale", "detail": "the delivery expired", "field": "operations[1].receipts[1]"},
        {"op": 0, "code": "invalid_request", "detail": "too large", "field": "operations[0].messages[0].body"},
        {"op": 3, "code": "invalid", "detail": "not a receipt of this queue", "field": "operations[3].receipts[0]"},
        {"op": 2, "code": "queue_full", "detail": "queue 'in' is full", "field": "operations[2]"},
    ]
    assert body["detail"].startswith("transaction 't1' was not applied")
    assert "operations[1].receipts[1]: the delivery expired" in body["detail"]
    assert body["detail"].endswith("(and 2 more)")


@pytest.mark.parametrize(
    ("field", "expected"),
    [
        ("ops", "operations"),
        ("ops[2].receipts", "operations[2].receipts"),
        ("transaction_id", "transaction_id"),
        ("stage_seq", "stage_seq"),
        (None, None),
    ],
)
@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/v1/transactions", {"transaction_id": "t1", "operations": OPERATIONS}),
        ("POST", "/v1/transactions/t1/operations", {"stage_seq": 1, "operations": OPERATIONS}),
    ],
)
@async_test
async def test_rejected_fields_are_named_as_in_the_request(
    method: str, path: str, body: object, field: str | None, expected: str | None
) -> None:
    fake = FakeBackend()
    fake.script = lambda op: Rejected(ErrorCode.INVALID_ARGUMENT, "too many", field)
    async with serve(fake) as client:
        result = await problem(await client.request(method, path, json=body), 400, "invalid_request")
    assert result.get("field") == expected


@pytest.mark.parametrize(
    ("code", "status"),
    [
        (ErrorCode.TRANSACTION_CONFLICT, 409),
        (ErrorCode.QUEUE_NOT_FOUND, 404),
        (ErrorCode.INVALID_ARGUMENT, 400),
        (ErrorCode.MESSAGE_TOO_LARGE, 413),
    ],
)
@async_test
async def test_transact_rejections(code: ErrorCode, status: int) -> None:
    fake = FakeBackend()
    fake.script = lambda op: Rejected(code, f"rejected: {code}")
    async with serve(fake) as client:
        response = await client.post("/v1/transactions", json={"transaction_id": "t1", "operations": OPERATIONS})
        expected = "invalid_request" if code is ErrorCode.INVALID_ARGUMENT else str(code)
        body = await problem(response, status, expected)
    assert body["detail"] == f"rejected: {code}"
    assert body["retry"] == "never"


@async_test
async def test_transact_pending_outcome_is_a_bug() -> None:
    fake = FakeBackend()
    fake.script = lambda op: _outcome(TxnStatus.PENDING)
    async with serve(fake) as client:
        response = await client.post("/v1/transactions", json={"transaction_id": "t1", "operations": OPERATIONS})
        await problem(response, 500, "internal")


@async_test
async def test_transact_max_sizes_are_accepted() -> None:
    fake = FakeBackend()
    ops: list[dict[str, object]] = [{"op": "ack", "queue": "q", "receipts": [f"r{i}"]} for i in range(98)]
    ops.append({"op": "enqueue", "queue": "q", "messages": [{"body": "x"}] * 500})
    ops.append({"op": "ack", "queue": "q", "receipts": [f"s{i}" for i in range(402)]})
    async with serve(fake) as client:
        big = {"transaction_id": "a" * 128, "operations": ops}
        assert (await client.post("/v1/transactions", json=big)).status == 200
    op = _only(fake)
    assert isinstance(op, Transact) and len(op.ops) == 100


def _ops(*replacements: tuple[int, object]) -> list[object]:
    ops: list[object] = [dict(op) for op in OPERATIONS]
    for i, op in replacements:
        ops[i] = op
    return ops


def _bad(*replacements: tuple[int, object]) -> dict[str, object]:
    return _txn(_ops(*replacements))


def _txn(operations: object, transaction_id: object = "t1") -> dict[str, object]:
    return {"transaction_id": transaction_id, "operations": operations}


BAD_TRANSACTS: list[tuple[str, object, str | None]] = [
    ("not json", b"{", None),
    ("empty", b"", None),
    ("array", b"[]", None),
    ("no id", {"operations": OPERATIONS}, "transaction_id"),
    ("id number", _txn(OPERATIONS, 5), "transaction_id"),
    ("id empty", _txn(OPERATIONS, ""), "transaction_id"),
    ("id too long", _txn(OPERATIONS, "a" * 129), "transaction_id"),
    ("id with a slash", _txn(OPERATIONS, "a/b"), "transaction_id"),
    ("id with a space", _txn(OPERATIONS, "a b"), "transaction_id"),
    ("id starting with a dot", _txn(OPERATIONS, ".."), "transaction_id"),
    ("unknown field", {**_txn(OPERATIONS), "timeout_s": 1}, "timeout_s"),
    ("no operations", {"transaction_id": "t1"}, "operations"),
    ("operations empty", _txn([]), "operations"),
    (
        "a receipt settled twice",
        _txn([{"op": "ack", "queue": "q", "receipts": ["r1"]}, {"op": "nack", "queue": "q", "receipts": ["r2", "r1"]}]),
        "operations[1].receipts[1]",
    ),
    ("operations object", _txn({"op": "ack"}), "operations"),
    ("101 operations", _txn([OPERATIONS[1]] * 101), "operations"),
    ("1001 items", _txn([{"op": "ack", "queue": "q", "receipts": ["r"] * 500}] * 2 + [OPERATIONS[2]]), "operations"),
    ("op not object", _bad((2, "ack")), "operations[2]"),
    ("no op", _bad((2, {"queue": "q", "receipts": ["r"]})), "operations[2].op"),
    ("op unknown", _bad((2, {"op": "delete", "queue": "q"})), "operations[2].op"),
    ("op not string", _bad((2, {"op": 1, "queue": "q"})), "operations[2].op"),
    ("no queue", _bad((2, {"op": "ack", "receipts": ["r"]})), "operations[2].queue"),
    ("bad queue", _bad((2, {"op": "ack", "queue": "-q", "receipts": ["r"]})), "operations[2].queue"),
    ("queue not string", _bad((2, {"op": "ack", "queue": None, "receipts": ["r"]})), "operations[2].queue"),
    (
        "unknown op field",
        _bad((1, {"op": "ack", "queue": "q", "receipts": ["r"], "delay_s": 1})),
        "operations[1].delay_s",
    ),
    ("no receipts", _bad((1, {"op": "ack", "queue": "q"})), "operations[1].receipts"),
    ("receipts empty", _bad((1, {"op": "ack", "queue": "q", "receipts": []})), "operations[1].receipts"),
    ("receipt number", _bad((1, {"op": "ack", "queue": "q", "receipts": ["r", 5]})), "operations[1].receipts[1]"),
    ("receipt too long", _bad((1, {"op": "ack", "queue": "q", "receipts": ["r" * 257]})), "operations[1].receipts[0]"),
    (
        "nack delay",
        _bad((2, {"op": "nack", "queue": "q", "receipts": ["r"], "delay_s": 901})),
        "operations[2].delay_s",
    ),
    (
        "extend no timeout",
        _bad((3, {"op": "extend", "queue": "q", "receipts": ["r"]})),
        "operations[3].visibility_timeout_s",
    ),
    (
        "extend timeout 0",
        _bad((3, {"op": "extend", "queue": "q", "receipts": ["r"], "visibility_timeout_s": 0})),
        "operations[3].visibility_timeout_s",
    ),
    ("no messages", _bad((0, {"op": "enqueue", "queue": "q"})), "operations[0].messages"),
    ("messages empty", _bad((0, {"op": "enqueue", "queue": "q", "messages": []})), "operations[0].messages"),
    (
        "single-message shape",
        _bad((0, {"op": "enqueue", "queue": "q", "body": "x"})),
        "operations[0].body",
    ),
    (
        "message not object",
        _bad((0, {"op": "enqueue", "queue": "q", "messages": ["x"]})),
        "operations[0].messages[0]",
    ),
    (
        "message body missing",
        _bad((0, {"op": "enqueue", "queue": "q", "messages": [{"body": "x"}, {"attributes": {}}]})),
        "operations[0].messages[1].body",
    ),
    (
        "message attribute",
        _bad((0, {"op": "enqueue", "queue": "q", "messages": [{"body": "x", "attributes": {"k": 1}}]})),
        "operations[0].messages[0].attributes.k",
    ),
    (
        "message delay",
        _bad((0, {"op": "enqueue", "queue": "q", "messages": [{"body": "x", "delay_s": True}]})),
        "operations[0].messages[0].delay_s",
    ),
    (
        "message key",
        _bad((0, {"op": "enqueue", "queue": "q", "messages": [{"body": "x", "idempotency_key": ""}]})),
        "operations[0].messages[0].idempotency_key",
    ),
    (
        "message unknown field",
        _bad((0, {"op": "enqueue", "queue": "q", "messages": [{"body": "x", "bdy": "y"}]})),
        "operations[0].messages[0].bdy",
    ),
]


@pytest.mark.parametrize(("body", "field"), [c[1:] for c in BAD_TRANSACTS], ids=[c[0] for c in BAD_TRANSACTS])
@async_test
async def test_bad_transact_is_400_naming_the_field_and_changes_nothing(body: object, field: str | None) -> None:
    fake = FakeBackend()
    async with serve(fake) as client:
        response = await client.post("/v1/transactions", data=_body(body))
        result = await problem(response, 400, "invalid_request")
    assert result.get("field") == field
    if field is not None:
        assert result["detail"].startswith(field + ": ")
    assert fake.ops == []


# --- interactive: begin, stage, commit, abort ---------------------------------------------------------------


@async_test
async def test_begin_is_201_then_200_when_duplicate() -> None:
    fake = FakeBackend()
    fake.retention_ms = 120_000
    async with serve(fake) as client:
        response = await client.put("/v1/transactions/t-1:a.b_c", json={"timeout_s": 12.5})
        assert response.status == 201
        assert await response.json() == {
            "transaction_id": "t-1:a.b_c",
            "status": "pending",
            "decided_index": None,
            "duplicate": False,
            "staged_ops": 0,
            "expires_at": "2024-05-01T12:00:12.623Z",
            "expires_at_ms": NOW_MS + 12_500,
            "results": [],
            "reason": None,
            "failures": [],
            "commit_index": 101,
        }
        fake.script = lambda op: _outcome(TxnStatus.PENDING, expires_at_ms=NOW_MS, staged_ops=2, duplicate=True)
        again = await client.put("/v1/transactions/t1")
        assert again.status == 200
        assert (await again.json())["duplicate"] is True
    assert fake.ops == [BeginTxn("t-1:a.b_c", 12_500, 120_000), BeginTxn("t1", 30_000, 120_000)]


BAD_BEGINS: list[tuple[str, str, object, str | None]] = [
    ("timeout 0", "t1", {"timeout_s": 0}, "timeout_s"),
    ("timeout negative", "t1", {"timeout_s": -1}, "timeout_s"),
    ("timeout too short", "t1", {"timeout_s": 0.999}, "timeout_s"),
    ("timeout too long", "t1", {"timeout_s": 900.001}, "timeout_s"),
    ("timeout string", "t1", {"timeout_s": "30"}, "timeout_s"),
    ("timeout null", "t1", {"timeout_s": None}, "timeout_s"),
    ("unknown field", "t1", {"timeout": 30}, "timeout"),
    ("not an object", "t1", b"[30]", None),
    ("id too long", "a" * 129, {}, "transaction_id"),
    ("id with a space", "a%20b", {}, "transaction_id"),
    ("id starting with a dash", "-a", {}, "transaction_id"),
    ("id with a percent", "a%25b", {}, "transaction_id"),
]


@pytest.mark.parametrize(("path_id", "body", "field"), [c[1:] for c in BAD_BEGINS], ids=[c[0] for c in BAD_BEGINS])
@async_test
async def test_bad_begin_is_400(path_id: str, body: object, field: str | None) -> None:
    fake = FakeBackend()
    async with serve(fake) as client:
        response = await client.put(f"/v1/transactions/{path_id}", data=_body(body))
        assert (await problem(response, 400, "invalid_request")).get("field") == field
    assert fake.ops == []


@async_test
async def test_stage_builds_the_command_and_renders_the_pending_outcome() -> None:
    fake = FakeBackend()
    async with serve(fake, new_message_id=_ids()) as client:
        response = await client.post(
            "/v1/transactions/t1/operations", json={"stage_seq": 3, "operations": OPERATIONS[:2]}
        )
        assert response.status == 200
        body = await response.json()
    op = _only(fake)
    assert isinstance(op, StageTxn)
    assert (op.transaction_id, op.stage_seq) == ("t1", 3)
    assert op.fingerprint == txn_fingerprint(op.ops)
    enqueue, ack = op.ops
    assert isinstance(enqueue, Enqueue) and [m.message_id for m in enqueue.messages] == ["id0", "id1"]
    assert ack == Ack("in", ["r1", "r2"])
    assert body["status"] == "pending"
    assert body["staged_ops"] == 2
    assert body["decided_index"] is None
    assert body["commit_index"] == 101


BAD_STAGES: list[tuple[str, object, str | None]] = [
    ("no seq", {"operations": OPERATIONS}, "stage_seq"),
    ("seq 0", {"stage_seq": 0, "operations": OPERATIONS}, "stage_seq"),
    ("seq float", {"stage_seq": 1.0, "operations": OPERATIONS}, "stage_seq"),
    ("seq bool", {"stage_seq": True, "operations": OPERATIONS}, "stage_seq"),
    ("seq too big", {"stage_seq": 2**63, "operations": OPERATIONS}, "stage_seq"),
    ("no operations", {"stage_seq": 1}, "operations"),
    ("bad op", {"stage_seq": 1, "operations": _ops((1, {"op": "ack", "queue": "q"}))}, "operations[1].receipts"),
    ("transaction_id in body", {"stage_seq": 1, "operations": OPERATIONS, "transaction_id": "t1"}, "transaction_id"),
    ("empty body", b"", None),
]


@pytest.mark.parametrize(("body", "field"), [c[1:] for c in BAD_STAGES], ids=[c[0] for c in BAD_STAGES])
@async_test
async def test_bad_stage_is_400(body: object, field: str | None) -> None:
    fake = FakeBackend()
    async with serve(fake) as client:
        response = await client.post("/v1/transactions/t1/operations", data=_body(body))
        assert (await problem(response, 400, "invalid_request")).get("field") == field
    assert fake.ops == []


@async_test
async def test_commit_renders_results_without_the_request_ops() -> None:
    fake = FakeBackend()
    fake.script = lambda op: _outcome(
        TxnStatus.COMMITTED,
        decided_index=9,
        results=[
            Enqueued([EnqueuedMessage("m1", 1)]),
            Settled([SettleOutcome.ACKED, SettleOutcome.ALREADY_ACKED]),
            Settled([SettleOutcome.DEAD_LETTERED, SettleOutcome.NACKED]),
            Settled([SettleOutcome.EXTENDED]),
        ],
        expires_at_ms=EXPIRES_MS,
        staged_ops=4,
    )
    async with serve(fake) as client:
        response = await client.post("/v1/transactions/t1/commit")
        assert response.status == 200
        body = await response.json()
        assert (await client.post("/v1/transactions/t1/commit", data=b"{}")).status == 200
    assert fake.ops == [CommitTxn("t1")] * 2
    assert body["status"] == "committed"
    assert body["decided_index"] == 9
    assert body["commit_index"] == 101
    assert body["results"] == [
        {"op": "enqueue", "messages": [{"message_id": "m1", "seq": 1, "duplicate": False}]},
        {"op": "ack", "outcomes": ["acked", "already_acked"]},
        {"op": "nack", "outcomes": ["dead_lettered", "nacked"]},
        {"op": "extend", "outcomes": ["extended"]},
    ]


@pytest.mark.parametrize(
    ("reason", "failures", "detail"),
    [
        ("timeout", [], "transaction 't1' was aborted: its timeout passed before it was committed"),
        ("aborted", [], "transaction 't1' was aborted by the client"),
        (
            "preconditions",
            [TxnFailure(4, "stale", "expired", "receipts[0]")],
            "transaction 't1' was not applied, its preconditions failed: operations[4].receipts[0]: expired",
        ),
    ],
)
@async_test
async def test_commit_aborted_is_409(reason: str, failures: list[TxnFailure], detail: str) -> None:
    fake = FakeBackend()
    fake.script = lambda op: _outcome(
        TxnStatus.ABORTED, decided_index=12, reason=reason, failures=failures, duplicate=True
    )
    async with serve(fake) as client:
        body = await problem(await client.post("/v1/transactions/t1/commit"), 409, "transaction_aborted")
    assert body["detail"] == detail
    assert body["reason"] == reason
    assert body["decided_index"] == 12
    assert body["duplicate"] is True
    assert len(body["failures"]) == len(failures)


@pytest.mark.parametrize("route", ["commit", "abort"])
@pytest.mark.parametrize(
    ("code", "status"),
    [
        (ErrorCode.TRANSACTION_NOT_FOUND, 404),
        (ErrorCode.TRANSACTION_NOT_PENDING, 409),
        (ErrorCode.TRANSACTION_CONFLICT, 409),
    ],
)
@async_test
async def test_commit_and_abort_rejections(route: str, code: ErrorCode, status: int) -> None:
    fake = FakeBackend()
    fake.script = lambda op: Rejected(code, f"{code} for t1")
    async with serve(fake) as client:
        body = await problem(await client.post(f"/v1/transactions/t1/{route}"), status, str(code))
    assert body["detail"] == f"{code} for t1"


@pytest.mark.parametrize(
    ("route", "method", "body"),
    [
        ("/v1/transactions/t1", "PUT", None),
        ("/v1/transactions/t1/operations", "POST", {"stage_seq": 1, "operations": OPERATIONS}),
        ("/v1/transactions/t1/commit", "POST", None),
        ("/v1/transactions/t1/abort", "POST", None),
    ],
)
@async_test
async def test_transaction_exists_renders_on_every_write(route: str, method: str, body: object) -> None:
    fake = FakeBackend()
    fake.script = lambda op: Rejected(ErrorCode.TRANSACTION_EXISTS, "t1 is in use")
    async with serve(fake) as client:
        await problem(await client.request(method, route, json=body), 409, "transaction_exists")


@pytest.mark.parametrize("route", ["commit", "abort"])
@async_test
async def test_commit_and_abort_take_no_fields(route: str) -> None:
    fake = FakeBackend()
    async with serve(fake) as client:
        response = await client.post(f"/v1/transactions/t1/{route}", json={"force": True})
        assert (await problem(response, 400, "invalid_request"))["field"] == "force"
        response = await client.post(f"/v1/transactions/t1/{route}", data=b"[]")
        await problem(response, 400, "invalid_request")
        response = await client.post(f"/v1/transactions/%20/{route}")
        assert (await problem(response, 400, "invalid_request"))["field"] == "transaction_id"
    assert fake.ops == []


@async_test
async def test_abort_is_200() -> None:
    fake = FakeBackend()
    async with serve(fake) as client:
        response = await client.post("/v1/transactions/t1/abort")
        assert response.status == 200
        body = await response.json()
    assert fake.ops == [AbortTxn("t1")]
    assert body["status"] == "aborted"
    assert body["reason"] == "aborted"
    assert body["decided_index"] == 101
    assert body["expires_at"] == EXPIRES


WRITES: list[tuple[str, str, object]] = [
    ("POST", "/v1/transactions", {"transaction_id": "t1", "operations": OPERATIONS}),
    ("PUT", "/v1/transactions/t1", {"timeout_s": 5}),
    ("POST", "/v1/transactions/t1/operations", {"stage_seq": 1, "operations": OPERATIONS}),
    ("POST", "/v1/transactions/t1/commit", None),
    ("POST", "/v1/transactions/t1/abort", None),
]


@pytest.mark.parametrize(("method", "path", "body"), WRITES)
@async_test
async def test_unknown_outcome_is_503_retry_with_the_same_transaction_id(method: str, path: str, body: object) -> None:
    fake = FakeBackend()

    def fail(op: Command) -> Result:
        raise OutcomeUnknown("the leader changed before the entry committed")

    fake.script = fail
    async with serve(fake) as client:
        response = await client.request(method, path, json=body)
        result = await problem(response, 503, "outcome_unknown")
    assert result["outcome"] == "unknown"
    assert result["retry"] == "same_idempotency_key"
    assert response.headers["Retry-After"] == "1"


@pytest.mark.parametrize(("method", "path", "body"), WRITES)
@async_test
async def test_no_leader_is_503_safe(method: str, path: str, body: object) -> None:
    fake = FakeBackend()

    def fail(op: Command) -> Result:
        raise NoLeader("election in progress")

    fake.script = fail
    async with serve(fake) as client:
        result = await problem(await client.request(method, path, json=body), 503, "no_leader")
    assert result["retry"] == "safe"


@pytest.mark.parametrize(("method", "path", "body"), WRITES)
@async_test
async def test_a_bug_in_a_transaction_route_is_500_without_traceback(method: str, path: str, body: object) -> None:
    fake = FakeBackend()

    def explode(op: Command) -> Result:
        raise RuntimeError("secret internals")

    fake.script = explode
    async with serve(fake) as client:
        response = await client.request(method, path, json=body)
        await problem(response, 500, "internal")
        assert "secret" not in await response.text()


# --- GET /v1/transactions/{id} ------------------------------------------------------------------------------


@async_test
async def test_get_is_a_linearizable_read() -> None:
    fake = FakeBackend()
    fake.transactions["t1"] = _outcome(
        TxnStatus.COMMITTED,
        decided_index=5,
        results=[Settled([SettleOutcome.ACKED])],
        expires_at_ms=EXPIRES_MS,
    )
    async with serve(fake) as client:
        response = await client.get("/v1/transactions/t1")
        assert response.status == 200
        body = await response.json()
        assert fake.barrier_calls == 1
        local = await client.get("/v1/transactions/t1?consistency=local")
        assert await local.json() == body
        assert fake.barrier_calls == 1
        explicit = await client.get("/v1/transactions/t1?consistency=linearizable")
        assert explicit.status == 200
        assert fake.barrier_calls == 2
    assert body == {
        "transaction_id": "t1",
        "status": "committed",
        "decided_index": 5,
        "duplicate": False,
        "staged_ops": 0,
        "expires_at": EXPIRES,
        "expires_at_ms": EXPIRES_MS,
        "results": [{"op": "ack", "outcomes": ["acked"]}],
        "reason": None,
        "failures": [],
    }
    assert fake.ops == []


@async_test
async def test_get_renders_pending_and_aborted() -> None:
    fake = FakeBackend()
    fake.transactions["p"] = TxnOutcome("p", TxnStatus.PENDING, expires_at_ms=NOW_MS, staged_ops=3)
    fake.transactions["a"] = TxnOutcome(
        "a",
        TxnStatus.ABORTED,
        decided_index=8,
        reason="preconditions",
        failures=[TxnFailure(2, "queue_full", "queue 'q' is full")],
        expires_at_ms=EXPIRES_MS,
    )
    async with serve(fake) as client:
        pending = await (await client.get("/v1/transactions/p")).json()
        aborted_response = await client.get("/v1/transactions/a")
        assert aborted_response.status == 200
        aborted = await aborted_response.json()
    assert (pending["status"], pending["staged_ops"], pending["decided_index"]) == ("pending", 3, None)
    assert pending["expires_at"] == "2024-05-01T12:00:00.123Z"
    assert aborted["status"] == "aborted"
    assert aborted["reason"] == "preconditions"
    assert aborted["failures"] == [
        {"op": 2, "code": "queue_full", "detail": "queue 'q' is full", "field": "operations[2]"}
    ]


@async_test
async def test_get_unknown_is_404() -> None:
    fake = FakeBackend()
    async with serve(fake) as client:
        body = await problem(await client.get("/v1/transactions/nope"), 404, "transaction_not_found")
        assert "nope" in body["detail"]
        await problem(await client.get("/v1/transactions/nope?consistency=local"), 404, "transaction_not_found")


@async_test
async def test_get_validation_and_barrier_failure() -> None:
    fake = FakeBackend()
    async with serve(fake) as client:
        response = await client.get("/v1/transactions/t1?consistency=strong")
        assert (await problem(response, 400, "invalid_request"))["field"] == "consistency"
        response = await client.get("/v1/transactions/" + "a" * 129)
        assert (await problem(response, 400, "invalid_request"))["field"] == "transaction_id"
        assert fake.barrier_calls == 0
        fake.barrier_error = OutcomeUnknown("barrier timed out")
        body = await problem(await client.get("/v1/transactions/t1"), 503, "timeout")
        assert body["retry"] == "safe"
        assert "outcome" not in body


@async_test
async def test_routes_and_methods() -> None:
    fake = FakeBackend()
    async with serve(fake) as client:
        await problem(await client.get("/v1/transactions"), 405, "method_not_allowed")
        await problem(await client.delete("/v1/transactions/t1"), 405, "method_not_allowed")
        await problem(await client.get("/v1/transactions/t1/commit"), 405, "method_not_allowed")
        await problem(await client.post("/v1/transactions/t1/rollback"), 404, "not_found")
    assert fake.ops == []
