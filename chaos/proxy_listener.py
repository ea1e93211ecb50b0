"""One proxy: a listening address, an upstream, its toxics and the connections it carries.

Disabling a proxy closes its listener and every open connection; enabling it listens again on the same
address (the real one, once an ephemeral port was picked). Toxic changes reach live connections at once.
"""

from __future__ import annotations

import asyncio
import socket
from typing import Any

from chaos.proxy_errors import TOXIC_EXISTS, TOXIC_NOT_FOUND, ApiError
from chaos.proxy_link import Connection
from chaos.proxy_toxics import Toxic


def split_hostport(address: str) -> tuple[str, int]:
    """``"127.0.0.1:80"`` or ``"[::1]:80"`` -> (host, port); raises ValueError."""
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"{address!r} is not host:port")
    return host.removeprefix("[").removesuffix("]"), int(port)


def join_hostport(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def bind_listener(host: str, port: int) -> socket.socket:
    """A listening TCP socket on the first address ``host`` resolves to (SO_REUSEADDR, like Go)."""
    family, kind, proto, _, addr = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(addr)
        sock.listen(128)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


class Proxy:
    """A Toxiproxy proxy. All methods run on the server's event loop."""

    def __init__(self, name: str, listen: str, upstream: str) -> None:
        self.name = name
        self.listen = listen
        self.upstream = upstream
        self.toxics: dict[str, Toxic] = {}
        self._server: asyncio.Server | None = None
        self._conns: set[Connection] = set()

    @property
    def enabled(self) -> bool:
        return self._server is not None

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "listen": self.listen,
            "upstream": self.upstream,
            "enabled": self.enabled,
            "toxics": [toxic.to_json() for toxic in self.toxics.values()],
        }

    async def start(self) -> None:
        if self._server is not None:
            return
        try:
            sock = bind_listener(*split_hostport(self.listen))
        except OSError as exc:
            reason = exc.strerror or str(exc)
            raise ApiError(f"listen tcp {self.listen}: {reason[:1].lower()}{reason[1:]}", 500) from exc
        self._server = await asyncio.start_server(self._accept, sock=sock)
        host, port = sock.getsockname()[:2]
        self.listen = join_hostport(host, port)

    async def stop(self) -> None:
        """Closes the listener and every connection (without flushing)."""
        server, self._server = self._server, None
        if server is not None:
            server.close()
            await server.wait_closed()
        conns, self._conns = list(self._conns), set()
        for conn in conns:
            conn.close()
        await asyncio.gather(*(conn.wait_closed() for conn in conns))

    async def update(self, listen: str, upstream: str, enabled: bool) -> None:
        """Toxiproxy's update: a new address or upstream restarts the proxy (dropping its connections)."""
        if listen != self.listen or upstream != self.upstream:
            await self.stop()
            self.listen, self.upstream = listen, upstream
        if enabled:
            await self.start()
        else:
            await self.stop()

    def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._conns = {conn for conn in self._conns if not conn.finished()}
        self._conns.add(Connection(reader, writer, split_hostport(self.upstream), self._toxics_of))

    def _toxics_of(self, stream: str) -> list[Toxic]:
        return [toxic for toxic in self.toxics.values() if toxic.stream == stream]

    def get_toxic(self, name: str) -> Toxic:
        if name not in self.toxics:
            raise ApiError(TOXIC_NOT_FOUND, 404)
        return self.toxics[name]

    def add_toxic(self, toxic: Toxic) -> None:
        if toxic.name in self.toxics:
            raise ApiError(TOXIC_EXISTS, 409)
        self.toxics[toxic.name] = toxic
        for conn in self._conns:
            conn.toxic_added(toxic)

    def update_toxic(self, name: str, body: object) -> Toxic:
        toxic = self.toxics[name] = self.get_toxic(name).updated(body)
        for conn in self._conns:
            conn.toxic_updated(toxic)
        return toxic

    def remove_toxic(self, name: str) -> None:
        toxic = self.toxics.pop(self.get_toxic(name).name)
        for conn in list(self._conns):
            conn.toxic_removed(toxic)
