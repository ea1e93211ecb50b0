"""Running the app in tests without an async pytest plugin: ``@async_test`` and ``serve``."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from typing import Any, ParamSpec

from aiohttp import ClientResponse, web
from aiohttp.test_utils import TestClient, TestServer

from api import Backend, create_app

P = ParamSpec("P")

#: No API test may take longer than this (long polls included).
TEST_TIMEOUT_S = 3.0

Client = TestClient[web.Request, web.Application]


def async_test(fn: Callable[P, Coroutine[Any, Any, None]]) -> Callable[P, None]:
    """Runs an ``async def`` test on a fresh event loop (pytest parametrization still works)."""

    @functools.wraps(fn)
    def run(*args: P.args, **kwargs: P.kwargs) -> None:
        async def bounded() -> None:
            async with asyncio.timeout(TEST_TIMEOUT_S):
                await fn(*args, **kwargs)

        asyncio.run(bounded())

    return run


@asynccontextmanager
async def serve(backend: Backend, **options: Any) -> AsyncIterator[Client]:
    """A client for ``create_app(backend, **options)`` served on 127.0.0.1."""
    client = TestClient(TestServer(create_app(backend, **options)))
    async with client:
        yield client


#: Extension members a problem may carry besides the standard ones (``transaction_aborted`` only).
TRANSACTION_EXTENSIONS = {"transaction_id", "reason", "failures", "decided_index", "duplicate"}


async def problem(response: ClientResponse, status: int, code: str) -> dict[str, Any]:
    """Asserts ``response`` is the problem+json ``status``/``code`` and returns its body."""
    assert response.status == status, await response.text()
    assert response.content_type == "application/problem+json"
    body: dict[str, Any] = await response.json(content_type=None)
    assert body["status"] == status
    assert body["code"] == code
    assert body["type"] == f"urn:raft-queue:problem:{code}"
    assert isinstance(body["title"], str) and body["title"]
    assert isinstance(body["detail"], str) and body["detail"]
    assert body["retry"] in ("never", "safe", "same_idempotency_key")
    standard = {"type", "title", "status", "code", "detail", "retry", "field", "outcome"}
    if code == "transaction_aborted":
        assert set(body) == standard - {"field", "outcome"} | TRANSACTION_EXTENSIONS
    else:
        assert set(body) <= standard
    return body
