"""The real HTTP API (``api.create_app``) over a real state machine (``MachineBackend``), served on 127.0.0.1 for
the client: its leases run on the wall clock, so a visibility timeout really runs out."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager

from aiohttp.test_utils import TestServer

from api import create_app
from tests.unit.api.machine_backend import MachineBackend


class WallClockBackend(MachineBackend):
    """Each log entry is stamped with the wall clock (``MachineBackend`` stamps a fixed time unless told)."""

    @property
    def now_ms(self) -> int:
        return int(time.time() * 1000)

    @now_ms.setter
    def now_ms(self, value: int) -> None:
        pass  # time is the wall clock's


@asynccontextmanager
async def real_node() -> AsyncIterator[tuple[str, WallClockBackend]]:
    """The URL of a one-node API and its backend."""
    backend = WallClockBackend()
    server = TestServer(create_app(backend), host="127.0.0.1")
    await server.start_server()
    try:
        yield str(server.make_url("")).rstrip("/"), backend
    finally:
        await server.close()


@contextmanager
def threaded_real_node() -> Iterator[tuple[str, WallClockBackend]]:
    """Like ``real_node``, served by an event loop in a background thread (for the blocking ``Client``)."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="real-node", daemon=True)
    thread.start()
    node = real_node()
    try:
        yield asyncio.run_coroutine_threadsafe(node.__aenter__(), loop).result(timeout=10)
    finally:
        asyncio.run_coroutine_threadsafe(node.__aexit__(None, None, None), loop).result(timeout=10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()
