"""Transactions: one-shot ``transact`` and the interactive handle, against fake nodes over real HTTP."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime

import pytest

from raft_queue_client import (
    AckOp,
    ApiError,
    EnqueueOp,
    EnqueueOpResult,
    ExtendOp,
    NackOp,
    OutcomeUnknownError,
    OutgoingMessage,
    ProtocolError,
    RetryEvent,
    SettleOpResult,
    SettleOutcome,
    SettleResult,
    TransactionAborted,
    TransactionConflict,
    TransactionFailure,
    TransactionNotFound,
    TransactionNotPending,
    TransactionOp,
    TransactionState,
    UnavailableError,
)

from .fake_server import Step, drop, fake_nodes, hang, no_leader, ok, outcome_unknown, problem, transaction_aborted
from .support import delivery, fast_client, run, txn_committed, txn_enqueued, txn_pending, txn_settled

OPS: list[TransactionOp] = [
    EnqueueOp("invoices", [OutgoingMessage("one", attributes={"k": "v"}, delay_s=2), "two"]),
    AckOp("orders", ["r-1", "r-2"]),
    NackOp("orders", "r-3", delay_s=5),
    ExtendOp("orders", ["r-4"], visibility_timeout_s=60),
]

COMMITTED = txn_committed(
    txn_enqueued("m-1", "m-2"),
    txn_settled("ack", "acked", "already_acked"),
    txn_settled("nack", "nacked"),
    txn_settled("extend", "extended"),
)


def test_transact_sends_the_ops_and_decodes_the_results() -> None:
    async def body() -> None:
        async with fake_nodes(1) as (a,), fast_client(a.url) as client:
            a.push(ok(COMMITTED))
            result = await client.transact("t-1", OPS)
            [sent] = a.requests
            assert (sent.method, sent.path, sent.query) == ("POST", "/v1/transactions", {"redirect": "true"})
            keys = [m["idempotency_key"] for m in sent.json["operations"][0]["messages"]]
            assert sent.json == {
                "transaction_id": "t-1",
                "operations": [
                    {
                        "op": "enqueue",
                        "queue": "invoices",
                        "messages": [
                            {"body": "one", "idempotency_key": keys[0], "attributes": {"k": "v"}, "delay_s": 2},
                            {"body": "two", "idempotency_key": keys[1]},
                        ],
                    },
                    {"op": "ack", "queue": "orders", "receipts": ["r-1", "r-2"]},
                    {"op": "nack", "queue": "orders", "receipts": ["r-3"], "delay_s": 5},
                    {"op": "extend", "queue": "orders", "receipts": ["r-4"], "visibility_timeout_s": 60},
                ],
            }
            assert len(set(keys)) == 2
            assert (result.transaction_id, result.decided_index, result.duplicate) == ("t-1", 21, False)
            enqueued, acked, nacked, extended = result.results
            assert isinstance(enqueued, EnqueueOpResult)
            assert [(m.message_id, m.duplicate, m.idempotency_key) for m in enqueued.messages] == [
                ("m-1", False, keys[0]),
                ("m-2", False, keys[1]),
            ]
            assert isinstance(acked, SettleOpResult)
            assert acked.op == "ack"
            assert acked.results == (
                SettleResult("r-1", SettleOutcome.ACKED),
                SettleResult("r-2", SettleOutcome.ALREADY_ACKED),
            )
            assert isinstance(nacked, SettleOpResult)
            assert isinstance(extended, SettleOpResult)
            assert (nacked.op, nacked.outcomes, nacked.receipts) == ("nack", (SettleOutcome.NACKED,), ("r-3",))
            assert (extended.op, extended.outcomes) == ("extend", (SettleOutcome.EXTENDED,))

    run(body())


def test_generated_keys_are_derived_from_the_transaction_so_a_resend_is_identical() -> None:
    async def body() -> None:
        async with fake_nodes(1) as (a,), fast_client(a.url) as client:
            a.fallback = ok(txn_committed(txn_enqueued("m-1", "m-2")))
            ops = [EnqueueOp("q", ["x", OutgoingMessage("y", idempotency_key="mine")])]
            await client.transact("t-1", ops)
            await client.transact("t-1", ops)  # e.g. the application resending after OutcomeUnknownError
            await client.transact("t-2", ops)
            first, again, other = (r.json["operations"][0]["messages"] for r in a.requests)
            assert first == again
            assert first[1]["idempotency_key"] == other[1]["idempotency_key"] == "mine"
            assert first[0]["idempotency_key"] != other[0]["idempotency_key"]
            assert uuid.UUID(first[0]["idempotency_key"]).version == 5

    run(body())


def test_ops_accept_received_messages_and_single_values() -> None:
    async def body() -> None:
        async with fake_nodes(1) as (a,), fast_client(a.url) as client:
            a.push(ok({"messages": [delivery(9, "r-9")], "commit_index": 3}))
            a.push(ok(txn_committed(txn_settled("ack", "acked"), txn_enqueued("m-1"))))
            [message] = await client.receive("orders")
            await client.transact("t-1", [AckOp("orders", message), EnqueueOp("q", "just one")])
            ops = a.requests[-1].json["operations"]
            assert ops[0]["receipts"] == ["r-9"]
            assert [m["body"] for m in ops[1]["messages"]] == ["just one"]
            with pytest.raises(TypeError, match=r"operations\[0\]"):
                await client.transact("t-2", [("ack", "orders")])  # type: ignore[list-item]
            with pytest.raises(ValueError, match="transaction_id"):
                await client.transact("", OPS)
            assert len(a.requests) == 2

    run(body())


UNKNOWN_STEPS: dict[str, Step] = {
    "503 outcome_unknown": outcome_unknown(),
    "connection dropped after the request": drop(),
    "no answer (timeout)": hang(),
    "502 from a proxy": Step(status=502, raw=b"<html>bad gateway</html>", content_type="text/html"),
}


@pytest.mark.parametrize("name", sorted(UNKNOWN_STEPS))
def test_an_unknown_outcome_is_retried_with_the_same_transaction_id_and_body(name: str) -> None:
    async def body() -> None:
        events: list[RetryEvent] = []
        async with fake_nodes(2) as (a, b), fast_client(a.url, b.url, events=events, timeout_s=0.3) as client:
            a.push(UNKNOWN_STEPS[name])
            b.push(ok(txn_committed(txn_enqueued("m-1", "m-2", duplicate=True), duplicate=True)))
            result = await client.transact("t-1", [OPS[0]])
            assert result.duplicate is True
            assert len(a.requests) == len(b.requests) == 1
            assert a.requests[0].json == b.requests[0].json  # same transaction_id, same keys, same ops
            assert b.requests[0].json["transaction_id"] == "t-1"
            assert [e.outcome_unknown for e in events] == [True]
            assert a.unexpected == []  # aiohttp did not resend on its own

    run(body())


def test_a_safe_failure_is_retried_and_running_out_is_unavailable() -> None:
    async def body() -> None:
        async with fake_nodes(2) as (a, b), fast_client(a.url, b.url, max_attempts=3) as client:
            a.push(no_leader())
            b.push(ok(COMMITTED))
            assert (await client.transact("t-1", OPS)).decided_index == 21
            a.fallback = no_leader()
            b.fallback = no_leader()
            with pytest.raises(UnavailableError):
                await client.transact("t-2", OPS)

    run(body())


def test_running_out_after_an_unknown_outcome_raises_outcome_unknown_with_the_id_and_keys() -> None:
    async def body() -> None:
        async with fake_nodes(2) as (a, b), fast_client(a.url, b.url, max_attempts=3) as client:
            a.fallback = outcome_unknown()
            b.fallback = no_leader()
            with pytest.raises(OutcomeUnknownError) as caught:
                await client.transact("t-1", OPS)
            error = caught.value
            assert error.transaction_id == "t-1"
            sent = a.requests[0].json["operations"][0]["messages"]
            assert error.idempotency_keys == tuple(m["idempotency_key"] for m in sent)
            assert {r.json["transaction_id"] for r in [*a.requests, *b.requests]} == {"t-1"}
            assert error.attempts == 3

    run(body())


def test_409_transaction_aborted_raises_with_the_failures_and_is_not_retried() -> None:
    async def body() -> None:
        async with fake_nodes(2) as (a, b), fast_client(a.url, b.url) as client:
            a.push(
                transaction_aborted(
                    "preconditions",
                    {"op": 1, "code": "stale", "detail": "receipt r-2 is stale", "field": "operations[1].receipts[1]"},
                    {"op": 0, "code": "queue_not_found", "detail": "no queue 'invoices'"},
                )
            )
            with pytest.raises(TransactionAborted) as caught:
                await client.transact("t-1", OPS)
            error = caught.value
            assert (error.status, error.code, error.reason) == (409, "transaction_aborted", "preconditions")
            assert error.failures == (
                TransactionFailure(
                    op=1, code="stale", detail="receipt r-2 is stale", field="operations[1].receipts[1]"
                ),
                TransactionFailure(op=0, code="queue_not_found", detail="no queue 'invoices'"),
            )
            assert "op 1: stale" in str(error)
            assert "preconditions" in str(error)
            assert (len(a.requests), len(b.requests)) == (1, 0)

    run(body())


def test_aborted_after_an_unknown_outcome_is_still_aborted() -> None:
    async def body() -> None:
        async with fake_nodes(2) as (a, b), fast_client(a.url, b.url) as client:
            a.push(drop())
            b.push(transaction_aborted("preconditions", {"op": 1, "code": "invalid", "detail": "bad receipt"}))
            with pytest.raises(TransactionAborted) as caught:
                await client.transact("t-1", OPS)
            assert [f.code for f in caught.value.failures] == ["invalid"]

    run(body())


def test_409_transaction_conflict() -> None:
    async def body() -> None:
        async with fake_nodes(1) as (a,), fast_client(a.url) as client:
            a.push(problem(409, "transaction_conflict", detail="t-1 was used for other ops"))
            with pytest.raises(TransactionConflict) as caught:
                await client.transact("t-1", OPS)
            assert caught.value.status == 409
            assert len(a.requests) == 1

    run(body())


def test_a_validation_error_is_raised_as_is() -> None:
    async def body() -> None:
        async with fake_nodes(1) as (a,), fast_client(a.url) as client:
            a.push(problem(422, "invalid_transaction", field="operations[2].receipts"))
            with pytest.raises(ApiError) as caught:
                await client.transact("t-1", OPS)
            assert (caught.value.status, caught.value.field) == (422, "operations[2].receipts")

    run(body())


@pytest.mark.parametrize(
    "answer",
    [
        txn_committed(txn_enqueued("m-1")),  # fewer results than ops
        txn_committed(
            txn_settled("ack", "acked"),  # results of other kinds
            txn_enqueued("m-1", "m-2"),
            txn_settled("nack", "nacked"),
            txn_settled("extend", "extended"),
        ),
        {**COMMITTED, "decided_index": None},
        {**COMMITTED, "results": [{"op": "purge"}]},
        {**COMMITTED, "status": "pending"},
    ],
    ids=["short", "mismatched", "no decided_index", "unknown op", "pending"],
)
def test_a_committed_answer_that_does_not_match_the_ops_is_a_protocol_error(answer: dict[str, object]) -> None:
    async def body() -> None:
        async with fake_nodes(1) as (a,), fast_client(a.url) as client:
            a.push(ok(answer))
            with pytest.raises(ProtocolError):
                await client.transact("t-1", OPS)

    run(body())


def test_a_200_that_says_aborted_raises_transaction_aborted() -> None:
    async def body() -> None:
        async with fake_nodes(1) as (a,), fast_client(a.url) as client:
            a.push(ok({"transaction_id": "t-1", "status": "aborted", "reason": "timeout", "decided_index": 4}))
            with pytest.raises(TransactionAborted) as caught:
                await client.transact("t-1", OPS)
            assert caught.value.reason == "timeout"

    run(body())


# --- interactive --------------------------------------------------------------------------------------------


def test_an_interactive_transaction_numbers_its_stages_and_commits() -> None:
    async def body() -> None:
        async with fake_nodes(1) as (a,), fast_client(a.url) as client:
            a.push(
                ok(txn_pending("t/1"), status=201),
                ok(txn_pending("t/1", staged_ops=1)),
                ok(txn_pending("t/1", staged_ops=3)),
                ok(
                    txn_committed(
                        txn_enqueued("m-1"),
                        txn_settled("ack", "acked"),
                        txn_enqueued("m-2", "m-3"),
                        transaction_id="t/1",
                        decided_index=30,
                    )
                ),
            )
            txn = await client.begin_transaction("t/1", timeout_s=12.5)
            assert txn.transaction_id == "t/1"
            assert txn.next_stage_seq == 1
            assert txn.info is not None
            assert txn.info.status is TransactionState.PENDING
            assert txn.info.expires_at == datetime(2024, 5, 1, 12, 0, 30, tzinfo=UTC)
            first = await txn.stage([EnqueueOp("q", ["a"])])
            assert first.staged_ops == 1
            await txn.stage([AckOp("orders", "r-1"), EnqueueOp("q", ["b", "c"])])
            assert txn.next_stage_seq == 3
            result = await txn.commit()

            begin, stage1, stage2, commit = a.requests
            assert (begin.method, begin.raw_path, begin.json) == ("PUT", "/v1/transactions/t%2F1", {"timeout_s": 12.5})
            assert (stage1.method, stage1.raw_path) == ("POST", "/v1/transactions/t%2F1/operations")
            assert stage1.json["stage_seq"] == 1
            assert stage2.json["stage_seq"] == 2
            assert [op["op"] for op in stage2.json["operations"]] == ["ack", "enqueue"]
            assert (commit.method, commit.raw_path, commit.json) == ("POST", "/v1/transactions/t%2F1/commit", None)

            assert (result.transaction_id, result.decided_index) == ("t/1", 30)
            keys = [
                m["idempotency_key"]
                for r in (stage1, stage2)
                for op in r.json["operations"]
                for m in op.get("messages", [])
            ]
            got = [m.idempotency_key for r in result.results if isinstance(r, EnqueueOpResult) for m in r.messages]
            assert got == keys
            assert len(set(keys)) == 3
            settle = result.results[1]
            assert isinstance(settle, SettleOpResult)
            assert settle.results == (SettleResult("r-1", SettleOutcome.ACKED),)

    run(body())


def test_a_stage_is_retried_with_the_same_seq_and_body() -> None:
    async def body() -> None:
        async with fake_nodes(2) as (a, b), fast_client(a.url, b.url) as client:
            a.push(ok(txn_pending(), status=201), drop())
            b.push(ok(txn_pending(staged_ops=1, duplicate=True)))
            txn = await client.begin_transaction("t-1")
            info = await txn.stage([EnqueueOp("q", ["a"])])
            assert info.duplicate is True
            assert a.requests[1].json == b.requests[0].json
            assert b.requests[0].json["stage_seq"] == 1
            assert txn.next_stage_seq == 2

    run(body())


def test_a_failed_stage_does_not_use_up_its_seq() -> None:
    async def body() -> None:
        async with fake_nodes(1) as (a,), fast_client(a.url, max_attempts=2) as client:
            a.push(ok(txn_pending(), status=201), drop(), drop())
            txn = await client.begin_transaction("t-1")
            ops: list[TransactionOp] = [EnqueueOp("q", ["a"]), NackOp("orders", ["r-1"])]
            with pytest.raises(OutcomeUnknownError) as caught:
                await txn.stage(ops)
            assert caught.value.transaction_id == "t-1"
            assert txn.next_stage_seq == 1
            a.push(ok(txn_pending(staged_ops=2, duplicate=True)))
            await txn.stage(ops)  # the same ops again: the same seq and body, a no-op if the lost one staged them
            assert txn.next_stage_seq == 2
            bodies = [r.json for r in a.requests[1:]]
            assert bodies[0] == bodies[1] == bodies[2]
            assert bodies[0]["stage_seq"] == 1

    run(body())


def test_concurrent_stage_calls_on_one_handle_take_turns() -> None:
    async def body() -> None:
        async with fake_nodes(1) as (a,), fast_client(a.url) as client:
            a.push(ok(txn_pending(), status=201))
            a.fallback = ok(txn_pending(staged_ops=1))
            txn = await client.begin_transaction("t-1")
            await asyncio.gather(*(txn.stage([AckOp("q", f"r-{i}")]) for i in range(5)))
            assert sorted(r.json["stage_seq"] for r in a.requests[1:]) == [1, 2, 3, 4, 5]
            assert txn.next_stage_seq == 6

    run(body())


def test_a_commit_is_retried_and_gets_the_recorded_outcome() -> None:
    async def body() -> None:
        async with fake_nodes(2) as (a, b), fast_client(a.url, b.url) as client:
            a.push(ok(txn_pending(), status=201), outcome_unknown())
            b.push(ok(txn_committed(txn_settled("ack", "acked"), duplicate=True)))
            txn = await client.begin_transaction("t-1")
            result = await txn.commit()
            assert result.duplicate is True
            assert b.requests[0].path == "/v1/transactions/t-1/commit"

    run(body())


def test_a_commit_after_the_timeout_raises_transaction_aborted() -> None:
    async def body() -> None:
        async with fake_nodes(1) as (a,), fast_client(a.url) as client:
            a.push(ok(txn_pending(), status=201), transaction_aborted("timeout"))
            txn = await client.begin_transaction("t-1", 1)
            with pytest.raises(TransactionAborted) as caught:
                await txn.commit()
            assert (caught.value.reason, caught.value.failures) == ("timeout", ())

    run(body())


def test_a_handle_that_did_not_stage_everything_commits_without_keys_or_receipts() -> None:
    async def body() -> None:
        async with fake_nodes(1) as (a,), fast_client(a.url) as client:
            a.push(ok(txn_pending(staged_ops=2), status=200), ok(txn_pending(staged_ops=3)))
            a.push(ok(txn_committed(txn_enqueued("m-1"), txn_settled("ack", "acked"), txn_enqueued("m-2"))))
            txn = await client.begin_transaction("t-1")  # an existing pending transaction
            await txn.stage([EnqueueOp("q", ["x"])])
            result = await txn.commit()
            first, ack, last = result.results
            assert isinstance(first, EnqueueOpResult)
            assert isinstance(last, EnqueueOpResult)
            assert isinstance(ack, SettleOpResult)
            assert first.messages[0].idempotency_key is None
            assert last.messages[0].idempotency_key is None
            assert (ack.receipts, ack.results) == ((), ())

    run(body())


def test_resume_transaction_continues_the_numbering() -> None:
    async def body() -> None:
        async with fake_nodes(1) as (a,), fast_client(a.url) as client:
            a.push(ok(txn_pending(staged_ops=4)))
            txn = client.resume_transaction("t-1", next_stage_seq=3)
            assert a.requests == []
            await txn.stage([ExtendOp("q", "r-1", visibility_timeout_s=5)])
            assert a.requests[0].json["stage_seq"] == 3
            assert txn.next_stage_seq == 4
            with pytest.raises(ValueError, match="next_stage_seq"):
                client.resume_transaction("t-1", next_stage_seq=0)

    run(body())


def test_abort() -> None:
    async def body() -> None:
        async with fake_nodes(1) as (a,), fast_client(a.url) as client:
            a.push(ok(txn_pending(), status=201), ok({"status": "aborted"}))
            txn = await client.begin_transaction("t-1")
            info = await txn.abort()
            assert (info.transaction_id, info.status) == ("t-1", TransactionState.ABORTED)
            assert txn.info == info
            assert (a.requests[1].method, a.requests[1].path) == ("POST", "/v1/transactions/t-1/abort")

    run(body())


def test_abort_of_a_committed_transaction_is_not_pending() -> None:
    async def body() -> None:
        async with fake_nodes(1) as (a,), fast_client(a.url) as client:
            a.push(problem(409, "transaction_not_pending"), ok(txn_committed()))
            txn = client.resume_transaction("t-1", next_stage_seq=1)
            with pytest.raises(TransactionNotPending):
                await txn.abort()
            with pytest.raises(TransactionNotPending):  # a 200 that says committed
                await txn.abort()

    run(body())


def test_begin_on_a_decided_transaction_raises() -> None:
    async def body() -> None:
        async with fake_nodes(1) as (a,), fast_client(a.url) as client:
            a.push(
                ok({"transaction_id": "t-1", "status": "aborted", "reason": "timeout", "decided_index": 3}),
                ok(txn_committed()),
            )
            with pytest.raises(TransactionAborted):
                await client.begin_transaction("t-1")
            with pytest.raises(TransactionNotPending):
                await client.begin_transaction("t-1")

    run(body())


def test_get_transaction() -> None:
    async def body() -> None:
        async with fake_nodes(1) as (a,), fast_client(a.url) as client:
            a.push(
                ok(txn_pending(staged_ops=2)),
                ok(
                    txn_committed(
                        txn_settled("ack", "acked"),
                        {"op": "nack", "outcomes": [{"receipt": "r-2", "outcome": "nacked"}]},
                    )
                ),
                ok(
                    {
                        "transaction_id": "t-1",
                        "status": "aborted",
                        "decided_index": 8,
                        "reason": "preconditions",
                        "failures": [{"op": 0, "code": "queue_full", "detail": "full"}],
                    }
                ),
                problem(404, "transaction_not_found"),
            )
            pending = await client.get_transaction("t-1")
            committed = await client.get_transaction("t-1")
            aborted = await client.get_transaction("t-1")
            assert (pending.status, pending.staged_ops, pending.expires_at_ms) == ("pending", 2, 1714564830000)
            assert committed.status is TransactionState.COMMITTED
            assert committed.results == (
                SettleOpResult(op="ack", outcomes=(SettleOutcome.ACKED,)),
                # outcomes sent as {"receipt", "outcome"} objects are tolerated and keep their receipts
                SettleOpResult(op="nack", outcomes=(SettleOutcome.NACKED,), receipts=("r-2",)),
            )
            assert (aborted.reason, aborted.decided_index, aborted.failures[0].code) == (
                "preconditions",
                8,
                "queue_full",
            )
            with pytest.raises(TransactionNotFound):
                await client.get_transaction("t-1")
            assert [(r.method, r.path) for r in a.requests] == [("GET", "/v1/transactions/t-1")] * 4

    run(body())


def test_get_transaction_is_a_read() -> None:
    async def body() -> None:
        async with fake_nodes(1) as (a,), fast_client(a.url, max_attempts=2) as client:
            a.fallback = drop()
            with pytest.raises(UnavailableError):
                await client.get_transaction("t-1")

    run(body())
