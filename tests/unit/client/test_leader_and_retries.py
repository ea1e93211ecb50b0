"""Leader finding, redirects and retries, against fake nodes over real HTTP."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable

import aiohttp
import msgspec
import pytest

from raft_queue_client import (
    AsyncClient,
    ClientClosedError,
    OutcomeUnknownError,
    ProtocolError,
    QueueNotFound,
    RaftQueueError,
    RetryEvent,
    ServiceUnavailable,
    UnavailableError,
)

from .fake_server import (
    PROBLEM,
    Step,
    drop,
    fake_nodes,
    hang,
    no_leader,
    ok,
    outcome_unknown,
    problem,
    redirect,
    refused_url,
)
from .support import created, enqueued, fast_client, queue_info, run

Operation = Callable[[AsyncClient], Awaitable[object]]

OPERATIONS: dict[str, tuple[str, str, Operation, Step]] = {
    "enqueue": (
        "POST",
        "/v1/queues/orders/messages",
        lambda c: c.enqueue("orders", "hello", attributes={"k": "v"}, delay_s=1.5),
        ok(enqueued(), status=201),
    ),
    "create_queue": (
        "PUT",
        "/v1/queues/orders",
        lambda c: c.create_queue("orders", max_length=10),
        ok(created(), status=201),
    ),
    "delete_queue": (
        "DELETE",
        "/v1/queues/orders",
        lambda c: c.delete_queue("orders"),
        ok({"deleted": True, "commit_index": 3}),
    ),
    "get_queue": ("GET", "/v1/queues/orders", lambda c: c.get_queue("orders"), ok(queue_info())),
}


def test_first_request_goes_to_the_first_url_with_redirect_true() -> None:
    async def body() -> None:
        async with fake_nodes(2) as (a, b), fast_client(a.url, b.url) as client:
            a.push(ok(queue_info()))
            await client.get_queue("orders")
            assert [r.query for r in a.requests] == [{"redirect": "true"}]
            assert b.requests == []

    run(body())


@pytest.mark.parametrize("name", sorted(OPERATIONS))
def test_a_redirect_is_followed_with_the_same_method_and_body(name: str) -> None:
    method, path, operation, answer = OPERATIONS[name]

    async def body() -> None:
        async with fake_nodes(2) as (a, b), fast_client(a.url) as client:
            a.push(redirect(b))
            b.push(answer)
            await operation(client)
            assert len(a.requests) == len(b.requests) == 1
            sent, followed = a.requests[0], b.requests[0]
            assert (followed.method, followed.path) == (method, path)
            assert followed.json == sent.json
            assert followed.query == sent.query == {"redirect": "true"}

    run(body())


def test_the_redirect_target_becomes_the_preferred_node() -> None:
    async def body() -> None:
        async with fake_nodes(2) as (a, b), fast_client(a.url) as client:
            b.leader = b
            a.leader = b
            a.push(redirect(b))
            b.push(ok(queue_info()), ok(queue_info()))
            await client.get_queue("orders")
            await client.get_queue("orders")
            assert len(a.requests) == 1
            assert len(b.requests) == 2
            assert client.preferred_url == b.url

    run(body())


def test_the_leader_header_makes_the_next_request_go_to_the_leader() -> None:
    async def body() -> None:
        async with fake_nodes(3) as (a, b, c), fast_client(a.url, b.url, c.url) as client:
            a.leader = c  # a answers itself (no redirect) but names c as the leader
            a.push(ok(enqueued(), status=201))
            c.push(ok(enqueued(seq=2), status=201))
            await client.enqueue("orders", "one")
            assert client.preferred_url == c.url
            second = await client.enqueue("orders", "two")
            assert second.seq == 2
            assert (len(a.requests), len(b.requests), len(c.requests)) == (1, 0, 1)

    run(body())


def test_a_malformed_leader_header_is_ignored() -> None:
    async def body() -> None:
        async with fake_nodes(1) as (a,), fast_client(a.url) as client:
            a.push(Step(json=queue_info(), headers={"X-Raft-Leader-Url": "not a url"}))
            await client.get_queue("orders")
            assert client.preferred_url == a.url

    run(body())


def test_no_leader_then_redirect_then_created() -> None:
    async def body() -> None:
        events: list[RetryEvent] = []
        async with fake_nodes(3) as (a, b, c), fast_client(a.url, b.url, c.url, events=events) as client:
            a.push(no_leader(retry_after="0"))
            b.push(redirect(c))
            c.push(ok(enqueued("m-7", 7), status=201))
            result = await client.enqueue("orders", "hello")
            assert (result.message_id, result.seq, result.duplicate) == ("m-7", 7, False)
            keys = {r.json["idempotency_key"] for r in [*a.requests, *b.requests, *c.requests]}
            assert keys == {result.idempotency_key}
            [event] = events
            assert event.attempt == 1
            assert event.node_url == a.url
            assert event.next_node_url == b.url
            assert "no_leader" in event.reason
            assert event.outcome_unknown is False
            assert event.retry_after_s == 0.0

    run(body())


@pytest.mark.parametrize("code", ["no_leader", "not_leader", "overloaded", "not_ready", "timeout"])
def test_a_safe_503_backs_off_and_tries_the_next_node(code: str) -> None:
    async def body() -> None:
        events: list[RetryEvent] = []
        async with fake_nodes(2) as (a, b), fast_client(a.url, b.url, events=events) as client:
            a.push(problem(503, code, retry="safe", retry_after="0"))
            b.push(ok(created(), status=201))
            result = await client.create_queue("orders")
            assert result.created
            assert [(e.node_url, e.next_node_url, e.outcome_unknown) for e in events] == [(a.url, b.url, False)]
            assert 0 < events[0].delay_s <= 0.005

    run(body())


def test_retry_after_is_read_and_the_wait_capped_at_backoff_max() -> None:
    async def body() -> None:
        events: list[RetryEvent] = []
        async with fake_nodes(1) as (a,), fast_client(a.url, events=events) as client:
            a.push(no_leader(retry_after="1"), ok(queue_info()))
            await client.get_queue("orders")
            [event] = events
            assert event.retry_after_s == 1.0
            assert event.delay_s == 0.005  # honoured up to backoff_max_s

    run(body())


def test_retry_after_floors_the_wait_only_when_the_retry_goes_back_to_the_same_node() -> None:
    """A node that cannot commit (a cut-off leader) answers no_leader with Retry-After: 1. That is its word about
    itself: the retry on another node goes after the plain backoff, not a second later."""

    async def body() -> None:
        events: list[RetryEvent] = []
        async with fake_nodes(2) as (a, b):
            client = AsyncClient(
                [a.url, b.url], backoff_initial_s=0.001, backoff_max_s=2.0, on_retry=events.append, timeout_s=5.0
            )
            async with client:
                a.push(no_leader(retry_after="1"))
                b.push(ok(queue_info()), no_leader(retry_after="1"), ok(queue_info()))
                await client.get_queue("orders")
                assert [(e.node_url, e.next_node_url, e.retry_after_s) for e in events] == [(a.url, b.url, 1.0)]
                assert events[0].delay_s <= 0.001
                # b answered last, so b is preferred; it names no leader, so the retry goes on to a, not back to b
                a.push(ok(queue_info()))
                await client.get_queue("orders")
                assert events[1].next_node_url == a.url and events[1].delay_s <= 0.002

    run(body())


def test_retry_after_is_honoured_when_the_only_node_asked_for_it() -> None:
    async def body() -> None:
        events: list[RetryEvent] = []
        async with fake_nodes(1) as (a,):
            client = AsyncClient([a.url], backoff_initial_s=0.001, backoff_max_s=0.2, on_retry=events.append)
            async with client:
                a.push(no_leader(retry_after="1"), ok(queue_info()))
                await client.get_queue("orders")
                [event] = events
                assert event.next_node_url == a.url and event.delay_s == 0.2  # Retry-After, capped at backoff_max

    run(body())


def test_a_503_that_names_another_leader_sends_the_retry_there() -> None:
    async def body() -> None:
        async with fake_nodes(3) as (a, b, c), fast_client(a.url, b.url, c.url) as client:
            a.leader = c
            a.push(problem(503, "not_leader", retry="safe", retry_after="0"))
            c.push(ok(queue_info()))
            await client.get_queue("orders")
            assert (len(a.requests), len(b.requests), len(c.requests)) == (1, 0, 1)

    run(body())


UNKNOWN_STEPS: dict[str, Step] = {
    "503 outcome_unknown": outcome_unknown(),
    "503 without retry but outcome unknown": problem(503, "outcome_unknown", retry=None, outcome="unknown"),
    "connection dropped after the request": drop(),
    "no answer (timeout)": hang(),
    "truncated answer": Step(status=201, json=enqueued(), truncate=True),
    "garbled answer": Step(garbage=b"NOT HTTP AT ALL\r\n\r\n"),
    "502 from a proxy": Step(status=502, raw=b"<html>bad gateway</html>", content_type="text/html"),
    "503 from a proxy": Step(status=503, raw=b"", content_type="text/plain"),
}


@pytest.mark.parametrize("name", sorted(UNKNOWN_STEPS))
def test_an_unknown_outcome_is_retried_with_the_same_idempotency_key(name: str) -> None:
    async def body() -> None:
        events: list[RetryEvent] = []
        async with fake_nodes(2) as (a, b), fast_client(a.url, b.url, events=events, timeout_s=0.3) as client:
            a.push(UNKNOWN_STEPS[name])
            b.push(ok(enqueued("m-1", 1, duplicate=True), status=200))
            result = await client.enqueue("orders", "hello")
            assert result.duplicate is True
            assert result.message_id == "m-1"
            first, retry = a.requests[0].json, b.requests[0].json
            assert first == retry  # the identical body: same key, same message
            assert first["idempotency_key"] == result.idempotency_key
            assert [e.outcome_unknown for e in events] == [True]

    run(body())


def test_a_callers_idempotency_key_is_kept_across_retries() -> None:
    async def body() -> None:
        async with fake_nodes(2) as (a, b), fast_client(a.url, b.url) as client:
            a.push(outcome_unknown())
            b.push(ok(enqueued(), status=201))
            result = await client.enqueue("orders", "hello", idempotency_key="order-42")
            assert result.idempotency_key == "order-42"
            assert [r.json["idempotency_key"] for r in [*a.requests, *b.requests]] == ["order-42"] * 2

    run(body())


def test_exhausting_attempts_after_unknown_outcomes_raises_outcome_unknown_with_the_key() -> None:
    async def body() -> None:
        async with fake_nodes(2) as (a, b), fast_client(a.url, b.url, max_attempts=4) as client:
            a.fallback = outcome_unknown()
            b.fallback = drop()
            with pytest.raises(OutcomeUnknownError) as caught:
                await client.enqueue("orders", "hello")
            error = caught.value
            sent_keys = {r.json["idempotency_key"] for r in [*a.requests, *b.requests]}
            assert len(a.requests) + len(b.requests) == 4
            assert sent_keys == {error.idempotency_key}
            assert error.idempotency_keys == (error.idempotency_key,)
            assert error.attempts == 4
            assert len(error.reasons) == 4
            assert isinstance(error.last_problem, ServiceUnavailable)
            assert error.last_problem.code == "outcome_unknown"
            assert not isinstance(error, UnavailableError)

    run(body())


def test_exhausting_attempts_when_every_failure_was_safe_raises_unavailable() -> None:
    async def body() -> None:
        async with fake_nodes(2) as (a, b), fast_client(a.url, b.url, max_attempts=3) as client:
            a.fallback = no_leader()
            b.fallback = problem(503, "overloaded", retry="safe", retry_after="0")
            with pytest.raises(UnavailableError) as caught:
                await client.enqueue("orders", "hello")
            error = caught.value
            assert not isinstance(error, OutcomeUnknownError)
            assert error.attempts == 3
            assert (len(a.requests), len(b.requests)) == (2, 1)
            assert error.last_problem is not None
            assert error.last_problem.code == "no_leader"
            assert isinstance(error.__cause__, ServiceUnavailable)

    run(body())


def test_one_unknown_outcome_among_safe_failures_still_means_unknown() -> None:
    async def body() -> None:
        async with fake_nodes(2) as (a, b), fast_client(a.url, b.url, max_attempts=3) as client:
            a.push(drop())
            a.fallback = no_leader()
            b.fallback = no_leader()
            with pytest.raises(OutcomeUnknownError):
                await client.ack("orders", ["r-1"])

    run(body())


def test_a_read_never_has_an_unknown_outcome() -> None:
    async def body() -> None:
        async with fake_nodes(1) as (a,), fast_client(a.url, max_attempts=2) as client:
            a.fallback = drop()
            with pytest.raises(UnavailableError):
                await client.get_queue("orders")
            assert len(a.requests) == 2

    run(body())


def test_connection_refused_on_the_first_url_moves_on_to_the_second() -> None:
    async def body() -> None:
        events: list[RetryEvent] = []
        async with fake_nodes(1) as (b,):
            dead = refused_url()
            async with fast_client(dead, b.url, events=events) as client:
                b.push(ok(enqueued(), status=201))
                await client.enqueue("orders", "hello")
                [event] = events
                assert (event.node_url, event.next_node_url) == (dead, b.url)
                assert "cannot connect" in event.reason
                assert event.outcome_unknown is False  # nothing was sent
                assert client.preferred_url == b.url

    run(body())


def test_nowhere_to_connect_is_unavailable_even_for_a_write() -> None:
    async def body() -> None:
        async with fast_client(refused_url(), refused_url(), max_attempts=3) as client:
            with pytest.raises(UnavailableError) as caught:
                await client.enqueue("orders", "hello")
            assert caught.value.attempts == 3

    run(body())


def test_more_than_three_redirects_is_a_safe_failure() -> None:
    async def body() -> None:
        async with fake_nodes(2) as (a, b), fast_client(a.url, max_attempts=2) as client:
            a.fallback = redirect(b)
            b.fallback = redirect(a)
            with pytest.raises(UnavailableError) as caught:
                await client.enqueue("orders", "hello")
            assert "more than 3 redirects" in caught.value.reasons[0]
            assert len(a.requests) + len(b.requests) == 2 * 4  # each attempt: the request and 3 hops

    run(body())


def test_a_404_on_a_delete_retry_after_an_unknown_outcome_is_success() -> None:
    async def body() -> None:
        async with fake_nodes(2) as (a, b), fast_client(a.url, b.url) as client:
            a.push(drop())
            b.push(problem(404, "queue_not_found"))
            result = await client.delete_queue("orders")
            assert result.commit_index is None
            # aiohttp resends a DELETE by itself after a dropped connection; the client must not let it.
            assert len(a.requests) == 1
            assert a.unexpected == []

    run(body())


def test_a_404_on_the_first_delete_is_queue_not_found() -> None:
    async def body() -> None:
        async with fake_nodes(1) as (a,), fast_client(a.url) as client:
            a.push(problem(404, "queue_not_found"))
            with pytest.raises(QueueNotFound):
                await client.delete_queue("orders")

    run(body())


def test_a_404_on_a_delete_retry_after_only_safe_failures_is_queue_not_found() -> None:
    async def body() -> None:
        async with fake_nodes(2) as (a, b), fast_client(a.url, b.url) as client:
            a.push(no_leader())
            b.push(problem(404, "queue_not_found"))
            with pytest.raises(QueueNotFound):
                await client.delete_queue("orders")

    run(body())


def test_a_dropped_put_is_retried_by_the_client_not_resent_by_aiohttp() -> None:
    async def body() -> None:
        events: list[RetryEvent] = []
        async with fake_nodes(2) as (a, b), fast_client(a.url, b.url, events=events) as client:
            a.push(drop())
            b.push(ok(created(was_created=False)))
            result = await client.create_queue("orders")
            assert result.created is False
            assert len(a.requests) == 1
            assert [e.outcome_unknown for e in events] == [True]

    run(body())


FOREIGN = (aiohttp.ClientError, asyncio.TimeoutError, msgspec.MsgspecError, json.JSONDecodeError, ValueError)

BAD_ANSWERS: dict[str, tuple[Step | None, type[RaftQueueError]]] = {
    "connection refused everywhere": (None, UnavailableError),
    "dropped connection": (drop(), OutcomeUnknownError),
    "no answer": (hang(), OutcomeUnknownError),
    "truncated answer": (Step(status=201, json=enqueued(), truncate=True), OutcomeUnknownError),
    "garbled answer": (Step(garbage=b"\x00\x01 nonsense\r\n\r\n"), OutcomeUnknownError),
    "proxy 502": (Step(status=502, raw=b"<html/>", content_type="text/html"), OutcomeUnknownError),
    "redirect loop": (Step(status=307, headers={"Location": "/v1/queues/orders/messages"}), UnavailableError),
    "201 that is not JSON": (Step(status=201, raw=b"{not json"), ProtocolError),
    "201 missing a field": (ok({"message_id": "m"}, status=201), ProtocolError),
    "201 with a wrong type": (ok({**enqueued(), "seq": "one"}, status=201), ProtocolError),
    "204 (not the API)": (Step(status=204), ProtocolError),
    "307 without Location": (Step(status=307), ProtocolError),
    "307 with a bad Location": (Step(status=307, headers={"Location": "http://[::1"}), ProtocolError),
    "307 to another scheme": (Step(status=307, headers={"Location": "ftp://x/y"}), ProtocolError),
    "301": (Step(status=301, headers={"Location": "http://127.0.0.1:1/"}), ProtocolError),
    "404 HTML page": (Step(status=404, raw=b"<html/>", content_type="text/html"), ProtocolError),
    "400 problem that is not JSON": (Step(status=400, raw=b"oops", content_type=PROBLEM), ProtocolError),
    "400 problem without code": (Step(status=400, json={"detail": "x"}, content_type=PROBLEM), ProtocolError),
}


@pytest.mark.parametrize("name", sorted(BAD_ANSWERS))
def test_no_foreign_exception_escapes(name: str) -> None:
    step, expected = BAD_ANSWERS[name]

    async def body() -> None:
        async with fake_nodes(1) as (a,):
            url = refused_url() if step is None else a.url
            if step is not None:
                a.fallback = step
            async with fast_client(url, max_attempts=2, timeout_s=0.3) as client:
                with pytest.raises(RaftQueueError) as caught:
                    await client.enqueue("orders", "hello")
            assert type(caught.value) is expected
            assert not isinstance(caught.value, FOREIGN)

    run(body())


def test_a_closed_client_refuses_calls() -> None:
    async def body() -> None:
        async with fake_nodes(1) as (a,):
            client = fast_client(a.url)
            await client.close()
            await client.close()  # idempotent
            assert client.closed
            with pytest.raises(ClientClosedError):
                await client.get_queue("orders")
            assert a.requests == []

    run(body())


def test_a_callers_session_is_used_and_left_open_and_its_middlewares_kept() -> None:
    async def add_header(request: aiohttp.ClientRequest, handler: aiohttp.ClientHandlerType) -> aiohttp.ClientResponse:
        request.headers["X-Caller"] = "yes"
        return await handler(request)

    async def body() -> None:
        async with (
            fake_nodes(2) as (a, b),
            aiohttp.ClientSession(middlewares=(add_header,)) as session,
        ):
            a.push(drop())
            b.push(ok(queue_info()))
            async with fast_client(a.url, b.url, session=session) as client:
                await client.get_queue("orders")
            assert not session.closed
            assert [r.headers.get("X-Caller") for r in [*a.requests, *b.requests]] == ["yes", "yes"]
            assert len(a.requests) == 1

    run(body())


def test_concurrent_calls_share_the_client() -> None:
    async def body() -> None:
        async with fake_nodes(2) as (a, b), fast_client(a.url, b.url) as client:
            a.fallback = redirect(b)
            b.fallback = ok(queue_info())
            results = await asyncio.gather(*(client.get_queue("orders") for _ in range(20)))
            assert {r.name for r in results} == {"orders"}
            assert len(b.requests) == 20

    run(body())


def test_a_redirect_target_is_preferred_even_without_a_leader_header() -> None:
    async def body() -> None:
        async with fake_nodes(2) as (a, b), fast_client(a.url) as client:
            a.push(redirect(b))
            b.push(ok(queue_info()), ok(queue_info()))
            await client.get_queue("orders")
            assert client.preferred_url == b.url
            await client.get_queue("orders")
            assert (len(a.requests), len(b.requests)) == (1, 2)

    run(body())


def test_the_attempt_timeout_covers_the_redirect_hops() -> None:
    async def body() -> None:
        async with fake_nodes(2) as (a, b), fast_client(a.url, max_attempts=1, timeout_s=0.3) as client:
            a.push(redirect(b))
            b.push(hang())
            with pytest.raises(OutcomeUnknownError) as caught:
                await client.enqueue("orders", "hello")
            [reason] = caught.value.reasons
            assert reason.startswith(f"{b.url}: no answer within 0.3s")

    run(body())


def test_a_redirect_to_a_dead_node_is_a_safe_failure() -> None:
    async def body() -> None:
        events: list[RetryEvent] = []
        async with fake_nodes(1) as (a,), fast_client(a.url, events=events) as client:
            dead = refused_url()
            a.push(Step(status=307, headers={"Location": f"{dead}/v1/queues/orders/messages?redirect=true"}))
            a.push(ok(enqueued(), status=201))
            await client.enqueue("orders", "hello")
            [event] = events
            assert (event.node_url, event.outcome_unknown, event.next_node_url) == (dead, False, a.url)

    run(body())
