"""Fixtures: a Toxiproxy-compatible server in a thread, the unmodified toxiproxy-python client, an echo server."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest
from toxiproxy import Toxiproxy
from toxiproxy.api import APIConsumer

from chaos.toxiproxy_server import ServerThread
from tests.unit.chaos.support import EchoServer


@pytest.fixture(autouse=True)
def no_loop_errors(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """Fails a test whose event loop logged a warning or error (a task that died, a leaked transport)."""
    yield
    records = [*caplog.get_records("setup"), *caplog.get_records("call"), *caplog.records]
    problems = [
        r.getMessage()
        for r in records
        if r.levelno >= logging.WARNING and r.name.startswith(("asyncio", "chaos", "aiohttp"))
    ]
    assert not problems, problems


@pytest.fixture
def server() -> Iterator[ServerThread]:
    with ServerThread() as running:
        yield running


@pytest.fixture
def client(server: ServerThread) -> Iterator[Any]:
    """A ``Toxiproxy`` pointed at ``server`` (the client keeps host and port as class attributes)."""
    saved = APIConsumer.host, APIConsumer.port
    api = Toxiproxy()
    api.update_api_consumer(server.host, server.port)
    yield api
    APIConsumer.host, APIConsumer.port = saved


@pytest.fixture
def echo(server: ServerThread) -> Iterator[str]:
    """The echo server's address, as a proxy upstream."""
    echo_server = EchoServer()
    port = server.call(echo_server.start())
    yield f"127.0.0.1:{port}"
    server.call(echo_server.close())
