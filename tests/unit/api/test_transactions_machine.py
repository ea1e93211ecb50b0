"""Transactions, receive attempt IDs and ``already_acked`` through the API against the real state machine
(``MachineBackend``): what a client sees of records, duplicates, conflicts, aborts and timeouts."""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import ClientResponse

from state_machine.contract import OutcomeUnknown
from tests.unit.api.harness import Client, async_test, problem, serve
from tests.unit.api.machine_backend import MachineBackend


async def _json(response: ClientResponse, status: int) -> dict[str, Any]:
    assert response.status == status, await response.text()
    body: dict[str, Any] = await response.json()
    return body


async def _setup(client: Client, messages: int = 2) -> list[str]:
    """Queues ``in`` and ``out``; ``messages`` messages in ``in``, all received: their receipts."""
    for name in ("in", "out"):
        assert (await client.put(f"/v1/queues/{name}")).status == 201
    if not messages:
        return []
    batch = {"messages": [{"body": f"m{i}"} for i in range(messages)]}
    await _json(await client.post("/v1/queues/in/messages", json=batch), 201)
    received = await _json(await client.post("/v1/queues/in/receive", json={"max_messages": messages}), 200)
    return [m["receipt"] for m in received["messages"]]


async def _counts(client: Client, queue: str) -> dict[str, int]:
    counts: dict[str, int] = (await _json(await client.get(f"/v1/queues/{queue}"), 200))["counts"]
    return counts


def _consume_produce(receipts: list[str], body: str = "result") -> list[dict[str, object]]:
    return [
        {"op": "ack", "queue": "in", "receipts": receipts},
        {"op": "enqueue", "queue": "out", "messages": [{"body": body}]},
    ]


# --- one-shot -----------------------------------------------------------------------------------------------


@async_test
async def test_one_shot_commits_atomically_and_a_retry_is_a_duplicate() -> None:
    backend = MachineBackend()
    async with serve(backend) as client:
        receipts = await _setup(client)
        request = {"transaction_id": "t1", "operations": _consume_produce(receipts)}
        first = await _json(await client.post("/v1/transactions", json=request), 200)
        assert first["status"] == "committed"
        assert first["duplicate"] is False
        assert first["decided_index"] == first["commit_index"]
        assert first["results"][0] == {"op": "ack", "outcomes": ["acked", "acked"]}
        assert first["results"][1]["op"] == "enqueue"
        [message] = first["results"][1]["messages"]
        assert first["expires_at_ms"] is not None
        assert (await _counts(client, "in"))["acked_total"] == 2
        assert (await _counts(client, "out"))["ready"] == 1

        again = await _json(await client.post("/v1/transactions", json=request), 200)
        assert again["duplicate"] is True
        assert again["decided_index"] == first["decided_index"]
        assert again["commit_index"] > first["commit_index"]
        assert again["results"][1]["messages"] == [message]  # the original id, not the retry's
        assert (await _counts(client, "out"))["ready"] == 1

        recorded = await _json(await client.get("/v1/transactions/t1"), 200)
        assert recorded["status"] == "committed"
        assert recorded["decided_index"] == first["decided_index"]
        assert recorded["results"] == first["results"]


@async_test
async def test_same_id_with_another_request_is_a_conflict() -> None:
    backend = MachineBackend()
    async with serve(backend) as client:
        receipts = await _setup(client)
        request = {"transaction_id": "t1", "operations": _consume_produce(receipts)}
        await _json(await client.post("/v1/transactions", json=request), 200)
        other = {"transaction_id": "t1", "operations": _consume_produce(receipts, body="other")}
        body = await problem(await client.post("/v1/transactions", json=other), 409, "transaction_conflict")
        assert body["retry"] == "never"
        assert (await _counts(client, "out"))["ready"] == 1


@async_test
async def test_failed_preconditions_abort_everything_and_record_nothing() -> None:
    backend = MachineBackend()
    async with serve(backend) as client:
        receipts = await _setup(client)
        await _json(await client.post("/v1/queues/in/ack", json={"receipts": receipts[:1]}), 200)
        await _json(await client.post("/v1/queues/in/nack", json={"receipts": receipts[1:]}), 200)
        before_in, before_out = await _counts(client, "in"), await _counts(client, "out")
        ops = [
            {"op": "enqueue", "queue": "out", "messages": [{"body": "x"}]},
            {"op": "nack", "queue": "in", "receipts": ["not-a-receipt", receipts[1]]},
        ]
        response = await client.post("/v1/transactions", json={"transaction_id": "t1", "operations": ops})
        body = await problem(response, 409, "transaction_aborted")
        assert body["reason"] == "preconditions"
        assert body["transaction_id"] == "t1"
        assert body["failures"], body
        fields = {f["field"] for f in body["failures"]}
        assert fields <= {"operations[1]", "operations[1].receipts[0]", "operations[1].receipts[1]"}, fields
        assert {f["op"] for f in body["failures"]} == {1}
        assert {f["code"] for f in body["failures"]} <= {"invalid", "stale"}
        assert await _counts(client, "in") == before_in
        assert await _counts(client, "out") == before_out
        await problem(await client.get("/v1/transactions/t1"), 404, "transaction_not_found")


@async_test
async def test_missing_queue_aborts_the_transaction() -> None:
    backend = MachineBackend()
    async with serve(backend) as client:
        receipts = await _setup(client)
        ops = [*_consume_produce(receipts), {"op": "enqueue", "queue": "nope", "messages": [{"body": "x"}]}]
        response = await client.post("/v1/transactions", json={"transaction_id": "t1", "operations": ops})
        body = await problem(response, 409, "transaction_aborted")
        assert [(f["op"], f["code"], f["field"]) for f in body["failures"]] == [(2, "queue_not_found", "operations[2]")]
        assert "operations[2]: " in body["detail"]
        assert (await _counts(client, "in"))["acked_total"] == 0
        assert (await _counts(client, "out"))["ready"] == 0


@async_test
async def test_a_too_large_message_names_its_field() -> None:
    backend = MachineBackend()
    async with serve(backend) as client:
        await _setup(client, messages=0)
        assert (await client.put("/v1/queues/small", json={"max_message_bytes": 4})).status == 201
        ops = [
            {"op": "enqueue", "queue": "out", "messages": [{"body": "fine"}]},
            {"op": "enqueue", "queue": "small", "messages": [{"body": "ok"}, {"body": "too long"}]},
        ]
        response = await client.post("/v1/transactions", json={"transaction_id": "t1", "operations": ops})
        body = await problem(response, 409, "transaction_aborted")
        [failure] = body["failures"]
        assert failure["op"] == 1
        assert failure["code"] == "message_too_large"
        assert failure["field"].startswith("operations[1].messages[1]"), failure
        assert (await _counts(client, "out"))["ready"] == 0


@async_test
async def test_unknown_outcome_then_retry_with_the_same_id() -> None:
    backend = MachineBackend()
    async with serve(backend) as client:
        receipts = await _setup(client)
        request = {"transaction_id": "t1", "operations": _consume_produce(receipts)}
        backend.unknown_after_apply = OutcomeUnknown("the answer was lost")
        body = await problem(await client.post("/v1/transactions", json=request), 503, "outcome_unknown")
        assert body["retry"] == "same_idempotency_key"
        retried = await _json(await client.post("/v1/transactions", json=request), 200)
        assert retried["duplicate"] is True
        assert (await _counts(client, "out"))["ready"] == 1
        assert (await _counts(client, "in"))["acked_total"] == 2


@async_test
async def test_limits_agree_with_the_state_machine() -> None:
    backend = MachineBackend()
    async with serve(backend) as client:
        await _setup(client, messages=0)
        ops = [{"op": "enqueue", "queue": "out", "messages": [{"body": str(i)}]} for i in range(100)]
        response = await client.post("/v1/transactions", json={"transaction_id": "a" * 128, "operations": ops})
        await _json(response, 200)
        ops = [{"op": "enqueue", "queue": "out", "messages": [{"body": "x"}] * 500}] * 2
        response = await client.post("/v1/transactions", json={"transaction_id": "t2", "operations": ops})
        await _json(response, 200)
        assert (await _counts(client, "out"))["ready"] == 1100


# --- interactive --------------------------------------------------------------------------------------------


@async_test
async def test_interactive_begin_stage_commit() -> None:
    backend = MachineBackend()
    async with serve(backend) as client:
        receipts = await _setup(client)
        begun = await _json(await client.put("/v1/transactions/i1", json={"timeout_s": 60}), 201)
        assert begun["status"] == "pending"
        assert begun["decided_index"] is None
        assert begun["expires_at_ms"] == backend.now_ms + 60_000
        assert (await _json(await client.put("/v1/transactions/i1", json={"timeout_s": 60}), 200))["duplicate"]

        stage1 = {"stage_seq": 1, "operations": _consume_produce(receipts[:1], "r0")}
        staged = await _json(await client.post("/v1/transactions/i1/operations", json=stage1), 200)
        assert (staged["status"], staged["staged_ops"], staged["duplicate"]) == ("pending", 2, False)
        repeat = await _json(await client.post("/v1/transactions/i1/operations", json=stage1), 200)
        assert (repeat["staged_ops"], repeat["duplicate"]) == (2, True)
        stage2 = {"stage_seq": 2, "operations": _consume_produce(receipts[1:], "r1")}
        staged = await _json(await client.post("/v1/transactions/i1/operations", json=stage2), 200)
        assert staged["staged_ops"] == 4

        pending = await _json(await client.get("/v1/transactions/i1"), 200)
        assert pending["status"] == "pending"
        assert (await _counts(client, "out"))["ready"] == 0  # nothing applies before the commit

        committed = await _json(await client.post("/v1/transactions/i1/commit"), 200)
        assert committed["status"] == "committed"
        assert committed["decided_index"] == committed["commit_index"]
        assert [r["op"] for r in committed["results"]] == ["ack", "enqueue", "ack", "enqueue"]
        assert (await _counts(client, "out"))["ready"] == 2
        assert (await _counts(client, "in"))["acked_total"] == 2

        again = await _json(await client.post("/v1/transactions/i1/commit"), 200)
        assert again["duplicate"] is True
        assert again["decided_index"] == committed["decided_index"]
        recorded = await _json(await client.get("/v1/transactions/i1?consistency=local"), 200)
        assert (recorded["status"], recorded["decided_index"]) == ("committed", committed["decided_index"])
        await problem(await client.post("/v1/transactions/i1/operations", json=stage2), 409, "transaction_not_pending")


@async_test
async def test_interactive_stage_with_another_request_under_the_same_seq_is_refused() -> None:
    backend = MachineBackend()
    async with serve(backend) as client:
        receipts = await _setup(client)
        await _json(await client.put("/v1/transactions/i1"), 201)
        stage1 = {"stage_seq": 1, "operations": _consume_produce(receipts[:1])}
        await _json(await client.post("/v1/transactions/i1/operations", json=stage1), 200)
        other = {"stage_seq": 1, "operations": _consume_produce(receipts[1:])}
        response = await client.post("/v1/transactions/i1/operations", json=other)
        assert response.status == 409, await response.text()
        assert (await response.json())["code"] == "transaction_conflict"


@async_test
async def test_interactive_commit_with_failed_preconditions_is_409() -> None:
    backend = MachineBackend()
    async with serve(backend) as client:
        receipts = await _setup(client)
        await _json(await client.put("/v1/transactions/i1"), 201)
        stage = {"stage_seq": 1, "operations": _consume_produce(receipts)}
        await _json(await client.post("/v1/transactions/i1/operations", json=stage), 200)
        await _json(await client.post("/v1/queues/in/nack", json={"receipts": receipts[:1]}), 200)  # now stale
        body = await problem(await client.post("/v1/transactions/i1/commit"), 409, "transaction_aborted")
        assert body["reason"] == "preconditions"
        assert body["duplicate"] is False
        assert body["decided_index"] is not None
        assert [(f["op"], f["field"], f["code"]) for f in body["failures"]] == [
            (0, "operations[0].receipts[0]", "stale")
        ]
        assert (await _counts(client, "out"))["ready"] == 0
        assert (await _counts(client, "in"))["acked_total"] == 0
        again = await problem(await client.post("/v1/transactions/i1/commit"), 409, "transaction_aborted")
        assert again["duplicate"] is True
        assert again["failures"] == body["failures"]
        recorded = await _json(await client.get("/v1/transactions/i1"), 200)
        assert (recorded["status"], recorded["reason"]) == ("aborted", "preconditions")


@async_test
async def test_interactive_timeout_aborts() -> None:
    backend = MachineBackend()
    async with serve(backend) as client:
        receipts = await _setup(client)
        await _json(await client.put("/v1/transactions/i1", json={"timeout_s": 1}), 201)
        stage = {"stage_seq": 1, "operations": _consume_produce(receipts)}
        await _json(await client.post("/v1/transactions/i1/operations", json=stage), 200)
        backend.now_ms += 1_500
        seen = await _json(await client.get("/v1/transactions/i1"), 200)  # the barrier moves the clock
        assert (seen["status"], seen["reason"]) == ("aborted", "timeout")
        body = await problem(await client.post("/v1/transactions/i1/commit"), 409, "transaction_aborted")
        assert body["reason"] == "timeout"
        assert body["failures"] == []
        assert body["detail"] == "transaction 'i1' was aborted: its timeout passed before it was committed"
        assert body["decided_index"] is None
        assert (await _counts(client, "out"))["ready"] == 0
        late = await client.post("/v1/transactions/i1/operations", json={**stage, "stage_seq": 2})
        await problem(late, 409, "transaction_not_pending")
        aborted = await _json(await client.post("/v1/transactions/i1/abort"), 200)
        assert (aborted["reason"], aborted["duplicate"]) == ("timeout", True)


@async_test
async def test_interactive_abort() -> None:
    backend = MachineBackend()
    async with serve(backend) as client:
        receipts = await _setup(client)
        await _json(await client.put("/v1/transactions/i1"), 201)
        stage = {"stage_seq": 1, "operations": _consume_produce(receipts)}
        await _json(await client.post("/v1/transactions/i1/operations", json=stage), 200)
        aborted = await _json(await client.post("/v1/transactions/i1/abort"), 200)
        assert aborted["status"] == "aborted"
        assert aborted["decided_index"] == aborted["commit_index"]
        body = await problem(await client.post("/v1/transactions/i1/commit"), 409, "transaction_not_pending")
        assert body["field"] == "transaction_id"
        again = await _json(await client.post("/v1/transactions/i1/abort"), 200)
        assert again["duplicate"] is True
        assert (await _counts(client, "out"))["ready"] == 0
        # The receipts are still good: nothing of the transaction applied.
        acked = await _json(await client.post("/v1/queues/in/ack", json={"receipts": receipts}), 200)
        assert [r["outcome"] for r in acked["results"]] == ["acked", "acked"]


@async_test
async def test_interactive_unknown_transaction_is_404() -> None:
    backend = MachineBackend()
    async with serve(backend) as client:
        await _setup(client, messages=0)
        stage = {"stage_seq": 1, "operations": [{"op": "enqueue", "queue": "out", "messages": [{"body": "x"}]}]}
        await problem(await client.post("/v1/transactions/nope/operations", json=stage), 404, "transaction_not_found")
        await problem(await client.post("/v1/transactions/nope/commit"), 404, "transaction_not_found")
        await problem(await client.post("/v1/transactions/nope/abort"), 404, "transaction_not_found")
        await problem(await client.get("/v1/transactions/nope"), 404, "transaction_not_found")


@async_test
async def test_begin_on_a_one_shot_id_is_refused() -> None:
    backend = MachineBackend()
    async with serve(backend) as client:
        receipts = await _setup(client)
        request = {"transaction_id": "t1", "operations": _consume_produce(receipts)}
        await _json(await client.post("/v1/transactions", json=request), 200)
        await problem(await client.put("/v1/transactions/t1"), 409, "transaction_exists")
        await _json(await client.put("/v1/transactions/i1"), 201)
        interactive = {"transaction_id": "i1", "operations": _consume_produce(receipts)}
        await problem(await client.post("/v1/transactions", json=interactive), 409, "transaction_conflict")


@async_test
async def test_stage_calls_are_numbered_and_bounded() -> None:
    backend = MachineBackend()
    async with serve(backend) as client:
        await _setup(client, messages=0)
        await _json(await client.put("/v1/transactions/i1"), 201)
        one = [{"op": "enqueue", "queue": "out", "messages": [{"body": "x"}]}]
        gap = await client.post("/v1/transactions/i1/operations", json={"stage_seq": 2, "operations": one})
        assert (await problem(gap, 400, "invalid_request"))["field"] == "stage_seq"
        await _json(
            await client.post("/v1/transactions/i1/operations", json={"stage_seq": 1, "operations": one * 60}), 200
        )
        over = await client.post("/v1/transactions/i1/operations", json={"stage_seq": 2, "operations": one * 41})
        assert (await problem(over, 400, "invalid_request"))["field"] == "operations"
        staged = await _json(
            await client.post("/v1/transactions/i1/operations", json={"stage_seq": 2, "operations": one * 40}), 200
        )
        assert staged["staged_ops"] == 100


# --- receive attempt IDs and already_acked ------------------------------------------------------------------


@async_test
async def test_a_retried_receive_attempt_returns_the_same_deliveries() -> None:
    backend = MachineBackend()
    async with serve(backend) as client:
        await _setup(client, messages=0)
        batch = {"messages": [{"body": f"m{i}"} for i in range(3)]}
        await _json(await client.post("/v1/queues/out/messages", json=batch), 201)
        request = {"max_messages": 2, "receive_attempt_id": "a1"}
        first = await _json(await client.post("/v1/queues/out/receive", json=request), 200)
        again = await _json(await client.post("/v1/queues/out/receive", json=request), 200)
        assert [m["receipt"] for m in again["messages"]] == [m["receipt"] for m in first["messages"]]
        assert len(first["messages"]) == 2
        other = await _json(await client.post("/v1/queues/out/receive", json={"receive_attempt_id": "a2"}), 200)
        assert [m["body"] for m in other["messages"]] == ["m2"]


@async_test
async def test_a_long_poll_with_an_attempt_id_still_gets_a_late_message() -> None:
    backend = MachineBackend()
    async with serve(backend) as client:
        await _setup(client, messages=0)
        poll = asyncio.create_task(
            client.post("/v1/queues/out/receive", json={"receive_attempt_id": "late", "wait_s": 2})
        )
        await asyncio.sleep(0.1)
        await _json(await client.post("/v1/queues/out/messages", json={"body": "late"}), 201)
        body = await _json(await poll, 200)
        assert [m["body"] for m in body["messages"]] == ["late"]


@async_test
async def test_acking_twice_answers_already_acked() -> None:
    backend = MachineBackend()
    async with serve(backend) as client:
        receipts = await _setup(client, messages=1)
        first = await _json(await client.post("/v1/queues/in/ack", json={"receipts": receipts}), 200)
        again = await _json(await client.post("/v1/queues/in/ack", json={"receipts": receipts}), 200)
        assert first["results"] == [{"receipt": receipts[0], "outcome": "acked"}]
        assert again["results"] == [{"receipt": receipts[0], "outcome": "already_acked"}]
