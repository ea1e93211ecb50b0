"""Every failure becomes problem+json: rejections, replication errors, bugs, aiohttp's own 404/405/413."""

from __future__ import annotations

import logging

import pytest

import state_machine.contract
from api.problems import READ_FAILURES, REJECTED, WRITE_FAILURES
from state_machine.commands import Command
from state_machine.contract import NotLeader, OutcomeUnknown, ReplicationError
from state_machine.results import ErrorCode, QueueDeleted, Rejected, Result
from tests.unit.api.fakes import FakeBackend
from tests.unit.api.harness import async_test, problem, serve


def _all_subclasses(cls: type[ReplicationError]) -> list[type[ReplicationError]]:
    found: list[type[ReplicationError]] = []
    for sub in cls.__subclasses__():
        found += [sub, *_all_subclasses(sub)]
    return found


REPLICATION_ERRORS = [
    cls for cls in _all_subclasses(ReplicationError) if cls.__module__ == state_machine.contract.__name__
]


def test_replication_errors_were_discovered() -> None:
    assert len(REPLICATION_ERRORS) >= 4


@pytest.mark.parametrize("cls", REPLICATION_ERRORS, ids=lambda cls: cls.__name__)
def test_every_replication_error_is_listed_for_reads_and_writes(cls: type[ReplicationError]) -> None:
    assert cls in WRITE_FAILURES, f"decide how a write that fails with {cls.__name__} is answered"
    assert cls in READ_FAILURES, f"decide how a read that fails with {cls.__name__} is answered"


@pytest.mark.parametrize("cls", [*REPLICATION_ERRORS, ReplicationError], ids=lambda cls: cls.__name__)
@async_test
async def test_every_replication_error_is_a_retryable_503(cls: type[ReplicationError]) -> None:
    error = cls("replication trouble")
    error.retry_after_s = 2.5

    def fail(op: Command) -> Result:
        raise error

    fake = FakeBackend()
    fake.script = fail
    fake.barrier_error = error
    async with serve(fake) as client:
        write = await client.post("/v1/queues/orders/messages", json={"body": "x"})
        body = await problem(write, 503, str(write_code(cls)))
        assert write.headers["Retry-After"] == "3"
        assert body["detail"] == "replication trouble"
        if issubclass(cls, OutcomeUnknown) or cls is ReplicationError:
            assert body["retry"] == "same_idempotency_key"
            assert body["outcome"] == "unknown"
        else:
            assert body["retry"] == "safe"
            assert "outcome" not in body
        read = await client.get("/v1/queues")
        body = await problem(read, 503, str(read_code(cls)))
        assert body["retry"] == "safe"
        assert "outcome" not in body
        assert read.headers["Retry-After"] == "3"


def write_code(cls: type[ReplicationError]) -> str:
    return WRITE_FAILURES[cls][0] if cls in WRITE_FAILURES else "outcome_unknown"


def read_code(cls: type[ReplicationError]) -> str:
    return READ_FAILURES[cls][0] if cls in READ_FAILURES else "timeout"


@pytest.mark.parametrize(
    ("cls", "code"),
    [
        (state_machine.contract.NoLeader, "no_leader"),
        (state_machine.contract.NotLeader, "not_leader"),
        (state_machine.contract.Overloaded, "overloaded"),
        (state_machine.contract.OutcomeUnknown, "outcome_unknown"),
    ],
)
def test_write_codes(cls: type[ReplicationError], code: str) -> None:
    assert WRITE_FAILURES[cls][0] == code


@async_test
async def test_not_leader_names_the_leader() -> None:
    fake = FakeBackend()

    def fail(op: Command) -> Result:
        raise NotLeader("not me", leader_url="http://n3:8000")

    fake.script = fail
    async with serve(fake) as client:
        body = await problem(await client.delete("/v1/queues/q"), 503, "not_leader")
    assert "http://n3:8000" in body["detail"]


@pytest.mark.parametrize("code", list(ErrorCode), ids=str)
def test_every_error_code_is_mapped(code: ErrorCode) -> None:
    assert code in REJECTED


@pytest.mark.parametrize("code", list(ErrorCode), ids=str)
@async_test
async def test_every_rejection_is_problem_json_and_only_invalid_entry_is_500(code: ErrorCode) -> None:
    fake = FakeBackend()
    fake.script = lambda op: Rejected(code, f"rejected with {code}")
    async with serve(fake) as client:
        response = await client.post("/v1/queues/orders/messages", json={"body": "x"})
        if code is ErrorCode.INVALID_ENTRY:
            body = await problem(response, 500, "internal")
            assert body["retry"] == "never"
        else:
            assert 400 <= response.status < 500
            expected = "invalid_request" if code is ErrorCode.INVALID_ARGUMENT else str(code)
            body = await problem(response, response.status, expected)
            assert body["detail"] == f"rejected with {code}"


@async_test
async def test_backend_bug_is_500_without_traceback(caplog: pytest.LogCaptureFixture) -> None:
    def explode(op: Command) -> Result:
        raise RuntimeError("secret internals /etc/passwd")

    fake = FakeBackend()
    fake.script = explode
    with caplog.at_level(logging.ERROR, logger="api"):
        async with serve(fake) as client:
            response = await client.post("/v1/queues/orders/messages", json={"body": "x"})
            body = await problem(response, 500, "internal")
            text = await response.text()
    assert body["retry"] == "never"
    assert "Traceback" not in text and "secret" not in text and "RuntimeError" not in text
    [record] = [r for r in caplog.records if r.name == "api.middlewares"]
    assert record.exc_info is not None
    assert record.getMessage().split()[2] in body["detail"]  # the incident id ties the answer to the log


@async_test
async def test_unexpected_result_type_is_500() -> None:
    fake = FakeBackend()
    fake.script = lambda op: QueueDeleted()
    async with serve(fake) as client:
        await problem(await client.post("/v1/queues/orders/receive"), 500, "internal")


@async_test
async def test_barrier_bug_is_500() -> None:
    fake = FakeBackend()
    fake.barrier_error = ValueError("boom")
    async with serve(fake) as client:
        await problem(await client.get("/v1/queues"), 500, "internal")


@async_test
async def test_unknown_route_is_404_problem() -> None:
    async with serve(FakeBackend()) as client:
        for path in ("/nope", "/v1/queues/a/b/c", "/v2/queues"):
            body = await problem(await client.get(path), 404, "not_found")
            assert body["retry"] == "never"


@async_test
async def test_wrong_method_is_405_problem() -> None:
    fake = FakeBackend()
    async with serve(fake) as client:
        response = await client.post("/v1/queues/orders")
        await problem(response, 405, "method_not_allowed")
        assert set(response.headers["Allow"].split(", ")) >= {"GET", "PUT", "DELETE"}
        await problem(await client.get("/v1/queues/orders/messages"), 405, "method_not_allowed")
        await problem(await client.delete("/v1/queues"), 405, "method_not_allowed")
    assert fake.ops == []


@async_test
async def test_request_over_the_node_limit_is_413() -> None:
    fake = FakeBackend()
    async with serve(fake, max_request_bytes=1024) as client:
        response = await client.post("/v1/queues/orders/messages", json={"body": "x" * 2000})
        body = await problem(response, 413, "request_too_large")
        assert "1024" in body["detail"]
        small = await client.post("/v1/queues/orders/messages", json={"body": "x" * 900})
        assert small.status == 201
    assert len(fake.ops) == 1


@async_test
async def test_queue_full_has_retry_after() -> None:
    fake = FakeBackend()

    def full(op: Command) -> Result:
        return Rejected(ErrorCode.QUEUE_FULL, "queue 'orders' holds max_length messages")

    fake.script = full
    async with serve(fake) as client:
        response = await client.post("/v1/queues/orders/messages", json={"body": "x"})
        await problem(response, 429, "queue_full")
        assert response.headers["Retry-After"] == "1"


@pytest.mark.parametrize("path", ["/v1/queues/q/messages", "/v1/queues/q/receive", "/v1/transactions"])
@async_test
async def test_json_nested_too_deeply_is_400_not_500(path: str) -> None:
    """msgspec recurses once per nesting level: a RecursionError was answered 500 with a traceback in the log."""
    fake = FakeBackend()
    deep = b'{"a":' + b"[" * 5000 + b"]" * 5000 + b"}"
    async with serve(fake) as client:
        response = await client.post(path, data=deep, headers={"Content-Type": "application/json"})
        body = await problem(response, 400, "invalid_request")
        assert "nested too deeply" in body["detail"]
    assert fake.ops == []


@pytest.mark.parametrize("encoding", ["gzip"])  # a bad deflate body is refused by aiohttp's parser (400 text/plain)
@async_test
async def test_a_body_that_does_not_match_its_content_encoding_is_400_not_500(encoding: str) -> None:
    """A body that does not decode as its Content-Encoding says was a 500 with aiohttp's traceback in the log."""
    fake = FakeBackend()
    async with serve(fake) as client:
        response = await client.post(
            "/v1/queues/q/messages",
            data=b'{"body": "a"}',
            headers={"Content-Type": "application/json", "Content-Encoding": encoding},
        )
        body = await problem(response, 400, "invalid_request")
        assert "could not be read" in body["detail"]
    assert fake.ops == []
