"""A scriptable stand-in for raft-queue nodes, served over real HTTP by aiohttp.web on 127.0.0.1.

Each ``FakeNode`` answers its requests from a script (``push``), one ``Step`` per request, in order, and
records what it received. A step can answer JSON or a problem, redirect to another node (``307`` to the same
path and query), drop the connection after reading the request (an unknown outcome), hang until the node is
closed (a timeout), or send a truncated or garbled answer. A request that finds the script empty and no
``fallback`` gets a ``500`` and is recorded in ``unexpected``.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
from collections import deque
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

PROBLEM = "application/problem+json"


@dataclass(frozen=True)
class Recorded:
    method: str
    path: str
    #: The path as sent, percent-encoding kept.
    raw_path: str
    query: dict[str, str]
    headers: dict[str, str]
    #: The decoded JSON body (``None`` when the body was empty).
    json: Any


@dataclass(frozen=True)
class Step:
    status: int = 200
    json: object = None
    raw: bytes | None = None
    content_type: str = "application/json"
    headers: Mapping[str, str] = field(default_factory=dict)
    redirect_to: FakeNode | None = None
    #: Close the connection after reading the request, without answering.
    drop: bool = False
    #: Never answer (until the node closes).
    hang: bool = False
    #: Send the status line, headers and part of the body, then close the connection.
    truncate: bool = False
    #: Write these bytes instead of an HTTP response, then close the connection.
    garbage: bytes | None = None

    def payload(self) -> bytes:
        if self.raw is not None:
            return self.raw
        return b"" if self.json is None else json.dumps(self.json).encode()


def ok(body: object, status: int = 200) -> Step:
    return Step(status=status, json=body)


def problem(
    status: int,
    code: str,
    *,
    retry: str | None = "never",
    detail: str | None = None,
    field: str | None = None,
    outcome: str | None = None,
    retry_after: str | None = None,
    extra: Mapping[str, object] | None = None,
) -> Step:
    doc: dict[str, object] = {
        "type": f"urn:raft-queue:problem:{code}",
        "title": code.replace("_", " ").capitalize(),
        "status": status,
        "code": code,
        "detail": detail or f"fake {code}",
    }
    if retry is not None:
        doc["retry"] = retry
    if field is not None:
        doc["field"] = field
    if outcome is not None:
        doc["outcome"] = outcome
    doc.update(extra or {})
    headers = {} if retry_after is None else {"Retry-After": retry_after}
    return Step(status=status, json=doc, content_type=PROBLEM, headers=headers)


def no_leader(retry_after: str = "0") -> Step:
    return problem(503, "no_leader", retry="safe", retry_after=retry_after)


def outcome_unknown(retry_after: str = "0") -> Step:
    return problem(503, "outcome_unknown", retry="same_idempotency_key", outcome="unknown", retry_after=retry_after)


def transaction_aborted(reason: str = "preconditions", *failures: Mapping[str, object]) -> Step:
    """``409 transaction_aborted`` with a reason and one entry per failing op (``{"op", "code", "detail"}``)."""
    return problem(409, "transaction_aborted", extra={"reason": reason, "failures": list(failures)})


def redirect(to: FakeNode) -> Step:
    return Step(status=307, redirect_to=to)


def drop() -> Step:
    return Step(drop=True)


def hang() -> Step:
    return Step(hang=True)


class FakeNode:
    def __init__(self, name: str) -> None:
        self.name = name
        self.url = ""
        self.requests: list[Recorded] = []
        self.unexpected: list[Recorded] = []
        self.script: deque[Step] = deque()
        #: Answers every request once the script is empty.
        self.fallback: Step | None = None
        #: Named in ``X-Raft-Leader-Url`` on every answer when set.
        self.leader: FakeNode | None = None
        self._runner: web.AppRunner | None = None
        self._released: asyncio.Event | None = None

    def push(self, *steps: Step) -> FakeNode:
        self.script.extend(steps)
        return self

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._released = asyncio.Event()
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        assert site._server is not None
        sockets = getattr(site._server, "sockets", None)
        assert sockets
        self.url = f"http://127.0.0.1:{sockets[0].getsockname()[1]}"

    async def close(self) -> None:
        if self._released is not None:
            self._released.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        record = Recorded(
            method=request.method,
            path=request.path,
            raw_path=request.raw_path.split("?", 1)[0],
            query=dict(request.query),
            headers=dict(request.headers),
            json=json.loads(raw) if raw else None,
        )
        self.requests.append(record)
        if self.script:
            step = self.script.popleft()
        elif self.fallback is not None:
            step = self.fallback
        else:
            self.unexpected.append(record)
            return web.json_response({"fake": "script exhausted"}, status=500)
        headers = {"X-Raft-Node": self.name}
        if self.leader is not None:
            headers["X-Raft-Leader-Url"] = self.leader.url
        headers.update(step.headers)
        transport = request.transport
        assert transport is not None
        if step.drop:
            transport.abort()
            return web.Response(status=200)
        if step.garbage is not None:
            transport.write(step.garbage)
            transport.close()
            return web.Response(status=200)
        if step.hang:
            assert self._released is not None
            await self._released.wait()
            return web.Response(status=204)
        if step.redirect_to is not None:
            headers["Location"] = step.redirect_to.url + request.path_qs
            return web.Response(status=307, headers=headers)
        body = step.payload()
        if step.truncate:
            response = web.StreamResponse(status=step.status, headers=headers)
            response.content_type = step.content_type
            response.content_length = len(body) + 100
            await response.prepare(request)
            await response.write(body)
            transport.abort()
            return response
        return web.Response(status=step.status, body=body, headers=headers, content_type=step.content_type)


@asynccontextmanager
async def fake_nodes(count: int) -> AsyncIterator[list[FakeNode]]:
    """``count`` started nodes named n1, n2, ...; all closed on exit."""
    nodes = [FakeNode(f"n{i + 1}") for i in range(count)]
    try:
        for node in nodes:
            await node.start()
        yield nodes
    finally:
        for node in nodes:
            await node.close()


@contextmanager
def threaded_fake_nodes(count: int) -> Iterator[list[FakeNode]]:
    """Like ``fake_nodes``, served by an event loop in a background thread (for the blocking ``Client``).
    Script the nodes before the calls that use them."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="fake-nodes", daemon=True)
    thread.start()
    nodes = [FakeNode(f"n{i + 1}") for i in range(count)]
    try:
        for node in nodes:
            asyncio.run_coroutine_threadsafe(node.start(), loop).result(timeout=10)
        yield nodes
    finally:
        for node in nodes:
            asyncio.run_coroutine_threadsafe(node.close(), loop).result(timeout=10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()


def refused_url() -> str:
    """A URL on 127.0.0.1 where nothing listens (a port the OS just handed out and took back)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"
