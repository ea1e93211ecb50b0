"""``/v1/queues``: create, list, describe, delete; config validation; read consistency."""

from __future__ import annotations

import pytest

from state_machine.commands import Command, CreateQueue, DeleteQueue
from state_machine.config import QueueConfig
from state_machine.contract import NoLeader, NotLeader, OutcomeUnknown, Overloaded, ReplicationError
from state_machine.results import ErrorCode, Rejected, Result
from tests.unit.api.fakes import FakeBackend, queue_info
from tests.unit.api.harness import async_test, problem, serve


@async_test
async def test_put_creates_with_defaults_then_200_when_identical() -> None:
    fake = FakeBackend()
    async with serve(fake) as client:
        first = await client.put("/v1/queues/orders")
        assert first.status == 201
        body = await first.json()
        assert body["created"] is True
        assert body["commit_index"] == 101
        assert body["queue"] == {
            "name": "orders",
            "config": {
                "visibility_timeout_s": 30,
                "max_deliveries": 0,
                "dead_letter_queue": None,
                "max_length": 0,
                "dedup_window_s": 86400,
                "max_message_bytes": 1048576,
            },
            "counts": {
                "ready": 0,
                "leased": 0,
                "delayed": 0,
                "dead_lettered": 0,
                "enqueued_total": 0,
                "acked_total": 0,
            },
            "created_at": "2024-05-01T12:00:00.123Z",
            "created_at_ms": 1_714_564_800_123,
        }
        again = await client.put("/v1/queues/orders", data=b"{}")
        assert again.status == 200
        assert (await again.json())["created"] is False
    assert fake.ops == [CreateQueue("orders", QueueConfig()), CreateQueue("orders", QueueConfig())]
    assert fake.timeouts == [10.0, 10.0]


@async_test
async def test_put_converts_seconds_to_milliseconds() -> None:
    fake = FakeBackend()
    config = {
        "visibility_timeout_s": 1.2345,
        "max_deliveries": 5,
        "dead_letter_queue": "orders-dlq",
        "max_length": 1000,
        "dedup_window_s": 60,
        "max_message_bytes": 4096,
    }
    async with serve(fake, request_timeout_s=2.5) as client:
        response = await client.put("/v1/queues/orders", json=config)
        assert response.status == 201
        rendered = (await response.json())["queue"]["config"]
    expected = QueueConfig(
        visibility_timeout_ms=1234,
        max_deliveries=5,
        dead_letter_queue="orders-dlq",
        max_length=1000,
        dedup_window_ms=60_000,
        max_message_bytes=4096,
    )
    assert fake.ops == [CreateQueue("orders", expected)]
    assert fake.timeouts == [2.5]
    assert rendered == {**config, "visibility_timeout_s": 1.234}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (b"{", None),
        (b"[]", None),
        (b'"x"', None),
        (b"NaN", None),
        (b'{"visibility_timeout_s": 1e400}', None),
        (b'{"visiblity_timeout_s": 5}', "visiblity_timeout_s"),
        (b'{"visibility_timeout_s": "30"}', "visibility_timeout_s"),
        (b'{"visibility_timeout_s": true}', "visibility_timeout_s"),
        (b'{"visibility_timeout_s": 0}', "visibility_timeout_s"),
        (b'{"visibility_timeout_s": 43200.001}', "visibility_timeout_s"),
        (b'{"visibility_timeout_s": 1e300}', "visibility_timeout_s"),
        (b'{"max_deliveries": 1.5}', "max_deliveries"),
        (b'{"max_deliveries": false}', "max_deliveries"),
        (b'{"max_deliveries": 3}', "dead_letter_queue"),
        (b'{"max_deliveries": 1001, "dead_letter_queue": "dlq"}', "max_deliveries"),
        (b'{"dead_letter_queue": "dlq"}', "max_deliveries"),
        (b'{"dead_letter_queue": 7, "max_deliveries": 3}', "dead_letter_queue"),
        (b'{"dead_letter_queue": "-bad", "max_deliveries": 3}', "dead_letter_queue"),
        (b'{"dead_letter_queue": "orders", "max_deliveries": 3}', "dead_letter_queue"),
        (b'{"max_length": -1}', "max_length"),
        (b'{"max_length": 99999999999999999999}', "max_length"),
        (b'{"dedup_window_s": -5}', "dedup_window_s"),
        (b'{"dedup_window_s": 2592001}', "dedup_window_s"),
        (b'{"max_message_bytes": 0}', "max_message_bytes"),
        (b'{"max_message_bytes": 8388609}', "max_message_bytes"),
    ],
)
@async_test
async def test_put_bad_config_is_400_naming_the_field(body: bytes, field: str | None) -> None:
    fake = FakeBackend()
    async with serve(fake) as client:
        response = await client.put("/v1/queues/orders", data=body)
        problem_body = await problem(response, 400, "invalid_request")
    assert problem_body.get("field") == field
    assert problem_body["retry"] == "never"
    assert fake.ops == []


@pytest.mark.parametrize("name", ["-orders", "a" * 129, "or%20ders", "or:ders", "_x", ".x"])
@async_test
async def test_bad_queue_names_are_400(name: str) -> None:
    fake = FakeBackend()
    async with serve(fake) as client:
        for method in ("PUT", "GET", "DELETE"):
            response = await client.request(method, f"/v1/queues/{name}")
            assert (await problem(response, 400, "invalid_request"))["field"] == "queue"
        for action in ("messages", "receive", "ack", "nack", "extend"):
            response = await client.post(f"/v1/queues/{name}/{action}", json={})
            assert (await problem(response, 400, "invalid_request"))["field"] == "queue"
    assert fake.ops == []
    assert fake.barrier_calls == 0


@async_test
async def test_longest_legal_name_is_accepted() -> None:
    async with serve(FakeBackend()) as client:
        assert (await client.put("/v1/queues/" + "a" * 128)).status == 201
        assert (await client.put("/v1/queues/A1_.-z")).status == 201


@pytest.mark.parametrize(
    ("code", "status"),
    [
        (ErrorCode.QUEUE_EXISTS, 409),
        (ErrorCode.DEAD_LETTER_QUEUE_NOT_FOUND, 409),
        (ErrorCode.INVALID_ARGUMENT, 400),
    ],
)
@async_test
async def test_put_rejections(code: ErrorCode, status: int) -> None:
    fake = FakeBackend()
    fake.script = lambda op: Rejected(code, "nope", field="dead_letter_queue")
    async with serve(fake) as client:
        response = await client.put("/v1/queues/orders", json={"max_deliveries": 2, "dead_letter_queue": "d"})
        body = await problem(response, status, "invalid_request" if status == 400 else str(code))
    assert body["field"] == "dead_letter_queue"
    assert body["detail"] == "nope"


@async_test
async def test_list_is_sorted_and_linearizable_by_default() -> None:
    fake = FakeBackend()
    for name in ("b", "c", "a"):
        fake.queues[name] = queue_info(name, ready=1)
    async with serve(fake, request_timeout_s=3.0) as client:
        response = await client.get("/v1/queues")
        assert response.status == 200
        body = await response.json()
        assert [q["name"] for q in body["queues"]] == ["a", "b", "c"]
        assert body["queues"][0]["counts"]["ready"] == 1
        assert fake.barrier_calls == 1
        assert fake.timeouts == [3.0]
        response = await client.get("/v1/queues?consistency=local")
        assert response.status == 200
        assert fake.barrier_calls == 1
    assert fake.ops == []


@async_test
async def test_get_queue_barrier_unless_local() -> None:
    fake = FakeBackend()
    fake.queues["orders"] = queue_info("orders", leased=2)
    async with serve(fake) as client:
        response = await client.get("/v1/queues/orders")
        assert response.status == 200
        assert (await response.json())["counts"]["leased"] == 2
        assert fake.barrier_calls == 1
        response = await client.get("/v1/queues/orders?consistency=local")
        assert response.status == 200
        assert fake.barrier_calls == 1
        missing = await client.get("/v1/queues/nope?consistency=local")
        assert (await problem(missing, 404, "queue_not_found"))["retry"] == "never"


@pytest.mark.parametrize("path", ["/v1/queues", "/v1/queues/orders"])
@pytest.mark.parametrize("value", ["LOCAL", "Linearizable", "", "stale"])
@async_test
async def test_unknown_consistency_is_400(path: str, value: str) -> None:
    fake = FakeBackend()
    fake.queues["orders"] = queue_info("orders")
    async with serve(fake) as client:
        response = await client.get(path, params={"consistency": value})
        assert (await problem(response, 400, "invalid_request"))["field"] == "consistency"
    assert fake.barrier_calls == 0


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (NoLeader("election"), "no_leader"),
        (NotLeader("moved", leader_url="http://n3:8000"), "not_leader"),
        (Overloaded("busy"), "overloaded"),
        (OutcomeUnknown("slow"), "timeout"),
    ],
)
@async_test
async def test_read_barrier_failures_are_safe_503(error: ReplicationError, code: str) -> None:
    fake = FakeBackend()
    fake.barrier_error = error
    async with serve(fake) as client:
        for path in ("/v1/queues", "/v1/queues/orders"):
            response = await client.get(path)
            body = await problem(response, 503, code)
            assert body["retry"] == "safe"
            assert "outcome" not in body
            assert response.headers["Retry-After"] == "1"


@async_test
async def test_delete() -> None:
    fake = FakeBackend()
    async with serve(fake) as client:
        response = await client.delete("/v1/queues/orders")
        assert response.status == 200
        assert await response.json() == {"deleted": True, "commit_index": 101}
    assert fake.ops == [DeleteQueue("orders")]


@pytest.mark.parametrize(("code", "status"), [(ErrorCode.QUEUE_NOT_FOUND, 404), (ErrorCode.QUEUE_IN_USE, 409)])
@async_test
async def test_delete_rejections(code: ErrorCode, status: int) -> None:
    fake = FakeBackend()
    fake.script = lambda op: Rejected(code, "no")
    async with serve(fake) as client:
        await problem(await client.delete("/v1/queues/orders"), status, str(code))


@async_test
async def test_put_when_queue_vanishes_before_read() -> None:
    def created_but_not_stored(op: Command) -> Result:
        return FakeBackend.default_script(FakeBackend(), op)

    fake = FakeBackend()
    fake.script = created_but_not_stored
    async with serve(fake) as client:
        await problem(await client.put("/v1/queues/orders"), 404, "queue_not_found")
