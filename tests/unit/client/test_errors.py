"""Problem documents become the right exception, with the fields the server sent."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from raft_queue_client import (
    ApiError,
    DeadLetterQueueNotFound,
    IdempotencyKeyConflict,
    InternalServerError,
    InvalidRequest,
    MessageTooLarge,
    MethodNotAllowed,
    OutcomeUnknownError,
    QueueExists,
    QueueFull,
    QueueInUse,
    QueueNotFound,
    RaftQueueError,
    RequestTooLarge,
    RouteNotFound,
    ServiceUnavailable,
    TransactionAborted,
    TransactionConflict,
    TransactionError,
    TransactionExists,
    TransactionNotFound,
    TransactionNotPending,
    UnavailableError,
)
from raft_queue_client.errors import CODE_TO_ERROR, error_from_problem

from .fake_server import fake_nodes, problem
from .support import fast_client, run

HTTP_API_DOC = Path(__file__).resolve().parents[3] / "docs" / "http-api.md"

TABLE: list[tuple[int, str, type[ApiError]]] = [
    (400, "invalid_request", InvalidRequest),
    (404, "queue_not_found", QueueNotFound),
    (404, "not_found", RouteNotFound),
    (405, "method_not_allowed", MethodNotAllowed),
    (409, "queue_exists", QueueExists),
    (409, "queue_in_use", QueueInUse),
    (409, "dead_letter_queue_not_found", DeadLetterQueueNotFound),
    (409, "idempotency_key_conflict", IdempotencyKeyConflict),
    (404, "transaction_not_found", TransactionNotFound),
    (409, "transaction_aborted", TransactionAborted),
    (409, "transaction_conflict", TransactionConflict),
    (409, "transaction_not_pending", TransactionNotPending),
    (409, "transaction_exists", TransactionExists),
    (413, "message_too_large", MessageTooLarge),
    (413, "request_too_large", RequestTooLarge),
    (429, "queue_full", QueueFull),
    (500, "internal", InternalServerError),
    (418, "a_code_from_the_future", ApiError),
]


@pytest.mark.parametrize(("status", "code", "cls"), TABLE, ids=[code for _, code, _ in TABLE])
def test_each_problem_code_raises_its_class_with_the_fields(status: int, code: str, cls: type[ApiError]) -> None:
    async def body() -> None:
        async with fake_nodes(1) as (a,), fast_client(a.url) as client:
            a.push(problem(status, code, detail="what happened", field="messages[3].body", retry_after="2"))
            with pytest.raises(ApiError) as caught:
                await client.enqueue("orders", "hello")
            error = caught.value
            assert type(error) is cls
            assert (error.status, error.code, error.detail) == (status, code, "what happened")
            assert error.field == "messages[3].body"
            assert error.retry == "never"
            assert error.retry_after_s == 2.0
            assert error.node_url == a.url
            assert error.title
            assert len(a.requests) == 1  # definite errors are not retried
            assert code in str(error)

    run(body())


def test_queue_full_is_raised_not_retried_even_when_the_server_says_safe() -> None:
    async def body() -> None:
        async with fake_nodes(1) as (a,), fast_client(a.url) as client:
            a.push(problem(429, "queue_full", retry="safe", retry_after="1"))
            with pytest.raises(QueueFull) as caught:
                await client.enqueue("orders", "hello")
            assert caught.value.retry == "safe"
            assert caught.value.retry_after_s == 1.0
            assert len(a.requests) == 1

    run(body())


def test_a_503_that_says_never_is_raised_as_service_unavailable() -> None:
    async def body() -> None:
        async with fake_nodes(1) as (a,), fast_client(a.url) as client:
            a.push(problem(503, "no_leader", retry="never"))
            with pytest.raises(ServiceUnavailable):
                await client.enqueue("orders", "hello")
            assert len(a.requests) == 1

    run(body())


def test_every_code_in_the_api_reference_is_mapped() -> None:
    text = HTTP_API_DOC.read_text(encoding="utf-8")
    errors_section = text.split("## Errors", 1)[1]
    documented = set()
    for line in errors_section.splitlines():
        if re.match(r"\|\s*\d{3}\s*\|", line):
            documented.update(re.findall(r"`([a-z_]+)`", line.split("|")[2]))
    assert {"invalid_request", "queue_full", "outcome_unknown"} <= documented
    assert documented <= set(CODE_TO_ERROR)


def test_the_hierarchy() -> None:
    for cls in {*CODE_TO_ERROR.values(), ApiError}:
        assert issubclass(cls, ApiError)
    for cls in (ApiError, UnavailableError, OutcomeUnknownError):
        assert issubclass(cls, RaftQueueError)
    for cls in (TransactionAborted, TransactionConflict, TransactionNotPending, TransactionExists, TransactionNotFound):
        assert issubclass(cls, TransactionError)
    assert not issubclass(OutcomeUnknownError, UnavailableError)
    assert not issubclass(UnavailableError, OutcomeUnknownError)


def test_error_from_problem_falls_back_to_api_error() -> None:
    error = error_from_problem(422, "unheard_of", "detail")
    assert type(error) is ApiError
    assert (error.status, error.code, error.field, error.retry) == (422, "unheard_of", None, None)


def test_outcome_unknown_error_says_what_to_do() -> None:
    error = OutcomeUnknownError("gave up", attempts=3, reasons=("a", "b", "c"), idempotency_keys=("k1", "k2"))
    assert error.idempotency_key == "k1"
    assert error.idempotency_keys == ("k1", "k2")
    assert "a; b; c" in str(error)
    assert OutcomeUnknownError("x", attempts=1).idempotency_key is None


def test_transaction_aborted_keeps_reason_and_failures() -> None:
    from raft_queue_client import TransactionFailure

    failure = TransactionFailure(op=2, code="queue_full", detail="full")
    error = error_from_problem(409, "transaction_aborted", "aborted", reason="preconditions", failures=[failure])
    assert isinstance(error, TransactionAborted)
    assert (error.reason, error.failures) == ("preconditions", (failure,))
    assert "op 2: queue_full" in str(error)
    plain = error_from_problem(409, "transaction_aborted", "aborted")
    assert isinstance(plain, TransactionAborted)
    assert (plain.reason, plain.failures) == (None, ())
    conflict = error_from_problem(409, "transaction_conflict", "x", reason="ignored")
    assert type(conflict) is TransactionConflict
