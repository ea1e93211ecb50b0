"""Helpers for the Toxiproxy-server tests: an echo server, raw HTTP, and blocking sockets with deadlines."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from http.client import HTTPConnection
from typing import Any

from chaos.proxy_listener import split_hostport
from chaos.toxiproxy_server import ServerThread


class EchoServer:
    """Echoes every byte back; runs on the Toxiproxy server's loop (``ServerThread.call``)."""

    def __init__(self) -> None:
        self._server: asyncio.Server | None = None
        self._handlers: dict[asyncio.Task[None], asyncio.StreamWriter] = {}

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._echo, "127.0.0.1", 0)
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    async def _echo(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers[task] = writer
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except OSError:
            pass
        finally:
            writer.close()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        for writer in self._handlers.values():
            writer.transport.abort()
        async with asyncio.timeout(5):  # each handler ends once it reads the EOF
            await asyncio.gather(*self._handlers)


def api_call(server: ServerThread | tuple[str, int], method: str, path: str, body: Any = None) -> tuple[int, Any]:
    """One raw request; returns (status, decoded JSON or text)."""
    host, port = server if isinstance(server, tuple) else (server.host, server.port)
    conn = HTTPConnection(host, port, timeout=5)
    try:
        payload = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
        conn.request(method, path, body=payload, headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        raw = resp.read()
        if "json" in resp.getheader("Content-Type", ""):
            return resp.status, json.loads(raw)
        return resp.status, raw.decode()
    finally:
        conn.close()


def connect(listen: str) -> socket.socket:
    return socket.create_connection(split_hostport(listen), timeout=5)


def recv_exactly(sock: socket.socket, size: int, timeout: float = 5.0) -> bytes:
    deadline = time.monotonic() + timeout
    data = b""
    while len(data) < size:
        sock.settimeout(max(deadline - time.monotonic(), 0.001))
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise AssertionError(f"connection closed after {len(data)} of {size} bytes")
        data += chunk
    return data


def round_trip(sock: socket.socket, payload: bytes = b"ping") -> float:
    """Seconds for ``payload`` to come back from the echo server."""
    start = time.monotonic()
    sock.sendall(payload)
    assert recv_exactly(sock, len(payload)) == payload
    return time.monotonic() - start


def silent_for(sock: socket.socket, seconds: float) -> bool:
    """True if nothing (no data, no close) arrives within ``seconds``."""
    sock.settimeout(seconds)
    try:
        sock.recv(1)
    except TimeoutError:
        return True
    return False


def ending(sock: socket.socket, timeout: float = 5.0) -> tuple[str, bytes]:
    """Reads until the peer closes: ("eof" | "reset", bytes received first); fails after ``timeout``."""
    deadline = time.monotonic() + timeout
    data = b""
    while True:
        sock.settimeout(max(deadline - time.monotonic(), 0.001))
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            return "reset", data
        except TimeoutError:
            raise AssertionError(f"still open after {timeout} s") from None
        if not chunk:
            return "eof", data
        data += chunk
