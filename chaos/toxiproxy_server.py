"""A Toxiproxy-compatible server in Python (asyncio): network faults between processes on 127.0.0.1.

Speaks Toxiproxy's HTTP API, so the ``toxiproxy-python`` client drives it unchanged. ``ToxiproxyServer`` runs on
the caller's event loop; ``ServerThread`` runs one in a background thread for blocking callers;
``python -m chaos.toxiproxy_server --port 8474`` runs one standalone (on 127.0.0.1 only).
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import signal
import threading
from collections.abc import Coroutine
from types import TracebackType
from typing import Any, TypeVar

from aiohttp import web

from chaos.proxy_api import ProxyApi
from chaos.proxy_listener import bind_listener, join_hostport

T = TypeVar("T")


class ToxiproxyServer:
    """The API server and all its proxies, on the running event loop."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host = host
        self.port = port
        self.api = ProxyApi()
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://{join_hostport(self.host, self.port)}"

    async def start(self) -> None:
        runner = web.AppRunner(self.api.app(), access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        try:
            sock = bind_listener(self.host, self.port)
            await web.SockSite(runner, sock).start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        self.port = sock.getsockname()[1]

    async def stop(self) -> None:
        """Stops the API, then every proxy and connection."""
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()
        await self.api.close()


class ServerThread:
    """A ``ToxiproxyServer`` on its own event loop in a daemon thread; a context manager for blocking code."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.server = ToxiproxyServer(host, port)
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None

    @property
    def host(self) -> str:
        return self.server.host

    @property
    def port(self) -> int:
        return self.server.port

    @property
    def url(self) -> str:
        return self.server.url

    def start(self, timeout: float = 10.0) -> None:
        started: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._thread = threading.Thread(target=asyncio.run, args=(self._main(started),), name="toxiproxy", daemon=True)
        self._thread.start()
        try:
            started.result(timeout)
        except BaseException:
            self._thread.join(timeout)
            raise

    async def _main(self, started: concurrent.futures.Future[None]) -> None:
        self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
        try:
            await self.server.start()
        except BaseException as exc:
            started.set_exception(exc)
            return
        started.set_result(None)
        try:
            await self._stop.wait()
        finally:
            await self.server.stop()

    def call(self, coro: Coroutine[Any, Any, T], timeout: float = 10.0) -> T:
        """Runs ``coro`` on the server's loop and returns its result (for helpers that share the loop)."""
        assert self._loop is not None, "not started"
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def stop(self, timeout: float = 10.0) -> None:
        if self._thread is None:
            return
        if self._loop is not None and self._stop is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise RuntimeError("the toxiproxy server thread did not stop")
        self._thread = None

    def __enter__(self) -> ServerThread:
        self.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()


async def _serve(port: int) -> None:
    server = ToxiproxyServer("127.0.0.1", port)
    await server.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    print(f"toxiproxy-compatible API on {server.url}", flush=True)
    try:
        await stop.wait()
    finally:
        await server.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m chaos.toxiproxy_server", description=__doc__)
    parser.add_argument("--port", type=int, default=8474, help="API port on 127.0.0.1 (default: 8474; 0 = any)")
    args = parser.parse_args(argv)
    asyncio.run(_serve(args.port))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
