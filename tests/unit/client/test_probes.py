"""Questions about one node (``healthy``, ``readiness``, ``state_digest``), against fake nodes over real HTTP: one
attempt at the node named, no ``?redirect=true``, no retry on another node."""

from __future__ import annotations

import pytest

from raft_queue_client import (
    Client,
    ClientClosedError,
    ProtocolError,
    Readiness,
    RetryEvent,
    ServiceUnavailable,
    StateDigest,
    UnavailableError,
)

from .fake_server import (
    FakeNode,
    Step,
    drop,
    fake_nodes,
    hang,
    no_leader,
    ok,
    problem,
    redirect,
    refused_url,
    threaded_fake_nodes,
)
from .support import fast_client, run

HEALTHY = ok({"status": "ok"})
READY = ok({"status": "ready", "node_id": "n2", "leader_id": "n1", "applied_index": 40, "commit_index": 41})
WHY_NOT_READY = "no leader is known (applied 3, committed 3)"
NOT_READY = problem(503, "not_ready", retry="safe", retry_after="1", detail=WHY_NOT_READY)
DIGEST = ok({"node_id": "n2", "applied_index": 40, "digest": "ab" * 32, "keys": 7})


def asked_once(node: FakeNode, path: str) -> None:
    """``node`` got exactly one request, a GET of ``path`` without any query (so no ``redirect``)."""
    assert [(r.method, r.path, r.query) for r in node.requests] == [("GET", path, {})]
    assert node.unexpected == []


def test_each_question_goes_to_the_named_node_only_without_redirect() -> None:
    async def body() -> None:
        events: list[RetryEvent] = []
        async with fake_nodes(3) as (a, b, c), fast_client(a.url, b.url, events=events) as client:
            for node in (a, b, c):
                node.leader = a
            b.push(HEALTHY)
            assert await client.healthy(b.url)
            asked_once(b, "/healthz")
            c.push(READY)  # c is not one of the client's URLs: any node can be asked
            assert await client.readiness(c.url + "/") == Readiness(
                ready=True, node_url=c.url, node_id="n2", leader_id="n1", applied_index=40, commit_index=41
            )
            asked_once(c, "/readyz")
            b.requests.clear()
            b.push(DIGEST)
            assert await client.state_digest(b.url) == StateDigest("n2", 40, "ab" * 32, 7)
            asked_once(b, "/v1/cluster/digest")
            assert a.requests == [] and events == []

    run(body())


def test_without_a_url_the_preferred_node_is_asked() -> None:
    async def body() -> None:
        async with fake_nodes(2) as (a, b), fast_client(a.url, b.url) as client:
            a.leader = b.leader = b
            a.push(HEALTHY)
            b.push(READY, DIGEST)
            assert await client.healthy()  # the first URL; its answer names b the leader, as any answer does
            asked_once(a, "/healthz")
            assert client.preferred_url == b.url
            assert (await client.readiness()).node_url == b.url
            assert (await client.state_digest()).node_id == "n2"
            assert [(r.path, r.query) for r in b.requests] == [("/readyz", {}), ("/v1/cluster/digest", {})]

    run(body())


def test_an_unreachable_node_is_not_healthy_and_no_other_node_is_asked() -> None:
    async def body() -> None:
        down = refused_url()
        events: list[RetryEvent] = []
        async with fake_nodes(1) as (a,), fast_client(down, a.url, events=events) as client:
            assert not await client.healthy(down)
            assert not await client.healthy()  # the preferred node is the unreachable one
            assert client.preferred_url == down  # a probe's failure does not move the preference
            assert a.requests == [] and events == []

    run(body())


@pytest.mark.parametrize(
    "answer",
    [
        pytest.param(no_leader(), id="503-problem"),
        pytest.param(problem(500, "internal"), id="500"),
        pytest.param(ok({"something": "else"}), id="200-not-the-api"),
        pytest.param(Step(status=503, raw=b"<html>busy</html>", content_type="text/html"), id="503-proxy-page"),
        pytest.param(drop(), id="connection-dropped"),
    ],
)
def test_a_node_that_answers_otherwise_is_not_healthy(answer: Step) -> None:
    async def body() -> None:
        async with fake_nodes(2) as (a, b), fast_client(a.url, b.url) as client:
            a.push(answer)
            assert not await client.healthy(a.url)
            assert len(a.requests) == 1 and b.requests == []

    run(body())


def test_a_redirect_is_not_followed() -> None:
    async def body() -> None:
        async with fake_nodes(2) as (a, b), fast_client(a.url, b.url) as client:
            a.push(redirect(b), redirect(b))
            assert not await client.healthy(a.url)
            with pytest.raises(ProtocolError):
                await client.state_digest(a.url)
            assert len(a.requests) == 2 and b.requests == []

    run(body())


def test_a_node_not_ready_says_why() -> None:
    async def body() -> None:
        events: list[RetryEvent] = []
        async with fake_nodes(2) as (a, b), fast_client(a.url, b.url, events=events) as client:
            b.push(NOT_READY)
            assert await client.readiness(b.url) == Readiness(ready=False, node_url=b.url, detail=WHY_NOT_READY)
            asked_once(b, "/readyz")
            assert a.requests == [] and events == []

    run(body())


def test_an_unreachable_node_raises_unavailable_after_one_attempt() -> None:
    async def body() -> None:
        down = refused_url()
        events: list[RetryEvent] = []
        async with fake_nodes(1) as (a,), fast_client(down, a.url, events=events, max_attempts=5) as client:
            with pytest.raises(UnavailableError) as readiness:
                await client.readiness(down)
            with pytest.raises(UnavailableError) as digest:
                await client.state_digest()
            for error in (readiness.value, digest.value):
                assert error.attempts == 1 and len(error.reasons) == 1 and "cannot connect" in error.reasons[0]
                assert error.last_problem is None
            assert a.requests == [] and events == []

    run(body())


def test_a_node_that_does_not_answer_in_time_raises_unavailable() -> None:
    async def body() -> None:
        async with fake_nodes(2) as (a, b), fast_client(a.url, b.url, timeout_s=0.2) as client:
            a.push(hang())
            with pytest.raises(UnavailableError) as raised:
                await client.readiness(a.url)
            assert raised.value.attempts == 1 and "no answer within" in raised.value.reasons[0]
            assert b.requests == []

    run(body())


def test_another_problem_is_the_nodes_answer_and_is_not_retried() -> None:
    async def body() -> None:
        async with fake_nodes(2) as (a, b), fast_client(a.url, b.url) as client:
            a.push(no_leader(), problem(503, "overloaded", retry="safe"))
            with pytest.raises(ServiceUnavailable) as digest:
                await client.state_digest(a.url)
            with pytest.raises(ServiceUnavailable) as readiness:
                await client.readiness(a.url)
            assert (digest.value.code, readiness.value.code) == ("no_leader", "overloaded")
            assert digest.value.node_url == a.url and len(a.requests) == 2 and b.requests == []

    run(body())


def test_a_closed_client_raises_and_a_bad_url_is_refused() -> None:
    async def body() -> None:
        async with fake_nodes(1) as (a,):
            client = fast_client(a.url)
            with pytest.raises(ValueError):
                await client.healthy("not a url")
            with pytest.raises(ValueError):
                await client.readiness("ftp://127.0.0.1:1")
            await client.close()
            for question in (client.healthy, client.readiness, client.state_digest):
                with pytest.raises(ClientClosedError):
                    await question(a.url)
            assert a.requests == []

    run(body())


def test_the_blocking_twins() -> None:
    down = refused_url()
    with (
        threaded_fake_nodes(2) as (a, b),
        Client([a.url, b.url], max_attempts=3, backoff_initial_s=0.001, backoff_max_s=0.005) as client,
    ):
        b.push(HEALTHY, NOT_READY, DIGEST)
        assert client.healthy(b.url) and not client.healthy(down)
        assert client.readiness(b.url) == Readiness(ready=False, node_url=b.url, detail=WHY_NOT_READY)
        assert client.state_digest(b.url).keys == 7
        a.push(READY)
        assert client.readiness().ready
        with pytest.raises(UnavailableError):
            client.state_digest(down)
        assert [r.path for r in a.requests] == ["/readyz"] and len(b.requests) == 3
    with pytest.raises(ClientClosedError):
        client.healthy()
