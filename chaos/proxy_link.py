"""One proxied TCP connection: both directions of bytes, each run live through its stream's toxics.

"upstream" carries client -> server bytes, "downstream" server -> client. Each direction has a reader task
(stamps every chunk with its arrival time) and a writer task that passes chunks through the toxics in the
order they were added. Toxics are attached, updated and removed on live connections; a removed or updated
toxic lets go of the chunk it is holding at once, as in Toxiproxy.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import socket
import struct
from collections.abc import Callable, Coroutine, Iterable, Sequence
from typing import Any, Literal, cast

from chaos.proxy_toxics import Toxic

log = logging.getLogger(__name__)

CHUNK = 32 * 1024
QUEUE_CHUNKS = 64
CloseHow = Literal["flush", "abort", "reset"]


class _Applied:
    """A toxic attached to one direction of one connection: its toxicity roll, interrupt and state."""

    def __init__(self, toxic: Toxic, sent: int = 0) -> None:
        self.toxic = toxic
        self.active = random.random() < toxic.toxicity
        self.interrupted = asyncio.Event()
        self.sent = sent  # limit_data: bytes let through so far (kept across updates)
        self.next_free = 0.0  # bandwidth: loop time at which the link is free again
        self.triggered = False  # reset_peer: the reset is under way
        self.timer: asyncio.TimerHandle | None = None  # timeout: closes the connection

    def attr(self, key: str) -> int:
        return self.toxic.attributes[key]

    def live(self) -> bool:
        return self.active and not self.interrupted.is_set()

    async def sleep(self, seconds: float) -> None:
        """Sleeps, but returns at once when the toxic is removed or updated; always lets other tasks run."""
        if seconds <= 0 or self.interrupted.is_set():
            await asyncio.sleep(0)
            return
        try:
            async with asyncio.timeout(seconds):
                await self.interrupted.wait()
        except TimeoutError:
            pass


class _Link:
    """One direction: reads ``src``, runs each chunk through the toxics, writes ``dst``."""

    def __init__(self, conn: Connection, src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        self.conn = conn
        self.src = src
        self.dst = dst
        self.chain: list[_Applied] = []
        self.queue: asyncio.Queue[tuple[bytes, float] | None] = asyncio.Queue(QUEUE_CHUNKS)

    def attach(self, toxic: Toxic, sent: int = 0, index: int | None = None) -> None:
        applied = _Applied(toxic, sent)
        timeout = toxic.attributes.get("timeout", 0)
        if applied.active and toxic.type == "timeout" and timeout > 0:
            applied.timer = asyncio.get_running_loop().call_later(timeout / 1000, self.conn.close, "flush")
        self.chain.insert(len(self.chain) if index is None else index, applied)

    def detach(self, name: str) -> tuple[int, _Applied] | None:
        for index, applied in enumerate(self.chain):
            if applied.toxic.name == name:
                del self.chain[index]
                applied.interrupted.set()
                if applied.timer is not None:
                    applied.timer.cancel()
                return index, applied
        return None

    async def read_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while data := await self.src.read(CHUNK):
            await self.queue.put((data, loop.time()))
        await self.queue.put(None)

    async def write_loop(self) -> None:
        while (item := await self.queue.get()) is not None:
            await self._through(item[0], item[1], tuple(self.chain))
        for applied in tuple(self.chain):
            if applied.live() and applied.toxic.type == "slow_close":
                await applied.sleep(applied.attr("delay") / 1000)
        if self.dst.can_write_eof():
            self.dst.write_eof()

    async def _through(self, data: bytes, stamp: float, chain: Sequence[_Applied]) -> None:
        """Passes one chunk through the first live toxic of ``chain``, which passes it on to the rest."""
        at = next((i for i, a in enumerate(chain) if a.live() and a.toxic.type not in _PASSIVE), None)
        if at is None:
            self.dst.write(data)
            await self.dst.drain()
            return
        applied, rest = chain[at], chain[at + 1 :]
        match applied.toxic.type:
            case "latency":
                jitter = applied.attr("jitter")
                delay = applied.attr("latency") + (random.uniform(-jitter, jitter) if jitter else 0)
                await applied.sleep(stamp + delay / 1000 - asyncio.get_running_loop().time())
                await self._through(data, stamp, rest)
            case "bandwidth":
                await self._bandwidth(applied, data, stamp, rest)
            case "slicer":
                pieces = _slices(data, applied.attr("average_size"), applied.attr("size_variation"))
                for i, piece in enumerate(pieces):
                    if i:
                        await applied.sleep(applied.attr("delay") / 1_000_000)
                    await self._through(piece, stamp, rest)
            case "limit_data":
                await self._limit_data(applied, data, stamp, rest)
            case "reset_peer":
                # As Toxiproxy's ResetToxic: the first chunk is taken (dropped) and the reset follows after the
                # timeout even if the toxic is removed meanwhile. Cancelling it then would leave a live stream
                # with a hole in it, which no real network produces (a peer would wait for the lost bytes forever).
                if not applied.triggered:
                    applied.triggered = True
                    await asyncio.sleep(applied.attr("timeout") / 1000)
                    self.conn.close("reset")
            case "timeout":  # drop the data; the toxic's timer (if any) closes the connection
                pass

    async def _bandwidth(self, applied: _Applied, data: bytes, stamp: float, rest: Sequence[_Applied]) -> None:
        rate = applied.attr("rate") * 1000  # bytes/s; Toxiproxy's KB is 1000 bytes
        if rate == 0:  # unlimited
            await self._through(data, stamp, rest)
            return
        loop = asyncio.get_running_loop()
        step = max(1, rate // 10)  # send in 100 ms slices, as Toxiproxy does
        for start in range(0, len(data), step):
            piece = data[start : start + step]
            applied.next_free = max(applied.next_free, loop.time()) + len(piece) / rate
            await applied.sleep(applied.next_free - loop.time())
            await self._through(piece, stamp, rest)

    async def _limit_data(self, applied: _Applied, data: bytes, stamp: float, rest: Sequence[_Applied]) -> None:
        piece = data[: max(applied.attr("bytes") - applied.sent, 0)]
        if piece:
            applied.sent += len(piece)
            await self._through(piece, stamp, rest)
        if applied.sent >= applied.attr("bytes"):
            self.conn.close("flush")


_PASSIVE = frozenset({"noop", "slow_close"})


def _slices(data: bytes, average: int, variation: int) -> Iterable[bytes]:
    start = 0
    while start < len(data):
        size = max(1, average + (random.randint(-variation, variation) if variation else 0))
        yield data[start : start + size]
        start += size


class _Dialled(asyncio.StreamReaderProtocol):
    """Hands the upstream transport to its connection as soon as it exists, so a close never leaks it."""

    def __init__(self, reader: asyncio.StreamReader, on_made: Callable[[asyncio.BaseTransport], None]) -> None:
        super().__init__(reader)
        self._on_made = on_made

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._on_made(transport)


class Connection:
    """A client connection accepted by a proxy, its upstream connection, and the two directions between them."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        upstream: tuple[str, int],
        toxics: Callable[[str], Iterable[Toxic]],
    ) -> None:
        self.closed = False
        self._client = (reader, writer)
        self._transports: list[asyncio.WriteTransport] = [writer.transport]
        self._links: dict[str, _Link] = {}
        self._ended = 0
        self._tasks = [asyncio.create_task(self._guard(self._run(upstream, toxics)))]

    async def _run(self, upstream: tuple[str, int], toxics: Callable[[str], Iterable[Toxic]]) -> None:
        loop = asyncio.get_running_loop()
        up_reader = asyncio.StreamReader(limit=CHUNK)
        protocol = _Dialled(up_reader, self._dialled)
        transport, _ = await loop.create_connection(lambda: protocol, *upstream)
        up_writer = asyncio.StreamWriter(transport, protocol, up_reader, loop)
        client_reader, client_writer = self._client
        self._links = {
            "upstream": _Link(self, client_reader, up_writer),
            "downstream": _Link(self, up_reader, client_writer),
        }
        for stream, link in self._links.items():
            for toxic in toxics(stream):
                link.attach(toxic)
            self._tasks.append(asyncio.create_task(self._guard(link.read_loop())))
            self._tasks.append(asyncio.create_task(self._guard(self._write(link))))

    def _dialled(self, transport: asyncio.BaseTransport) -> None:
        self._transports.append(cast(asyncio.WriteTransport, transport))
        if self.closed:
            self._transports[-1].abort()

    async def _write(self, link: _Link) -> None:
        await link.write_loop()
        self._ended += 1
        if self._ended == 2:  # both sides sent EOF and everything was delivered
            self.close("flush")

    async def _guard(self, coro: Coroutine[Any, Any, None]) -> None:
        try:
            await coro
        except OSError:
            self.close()
        except Exception:
            log.exception("proxied connection failed")
            self.close()

    def toxic_added(self, toxic: Toxic) -> None:
        if self.closed:
            return
        if (link := self._links.get(toxic.stream)) is not None:
            link.attach(toxic)

    def toxic_updated(self, toxic: Toxic) -> None:
        if self.closed:
            return
        if (link := self._links.get(toxic.stream)) is not None and (found := link.detach(toxic.name)):
            link.attach(toxic, sent=found[1].sent, index=found[0])

    def toxic_removed(self, toxic: Toxic) -> None:
        if self.closed:
            return
        link = self._links.get(toxic.stream)
        found = link.detach(toxic.name) if link is not None else None
        if found is not None and found[1].active and toxic.type == "timeout":  # Toxiproxy's cleanup: it ends
            self.close()

    def close(self, how: CloseHow = "abort") -> None:
        """Ends the connection: ``flush`` sends what is buffered first, ``reset`` sends RST (SO_LINGER 0)."""
        first, self.closed = not self.closed, True
        if first or how != "flush":
            for transport in self._transports:
                if how == "flush":
                    transport.close()
                    continue
                sock = transport.get_extra_info("socket")
                if how == "reset" and sock is not None:
                    with contextlib.suppress(OSError):  # already closed
                        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                transport.abort()
        if first:
            for link in self._links.values():
                for applied in link.chain:
                    if applied.timer is not None:
                        applied.timer.cancel()
            for task in self._tasks:
                task.cancel()

    def finished(self) -> bool:
        return self.closed and all(task.done() for task in self._tasks)

    async def wait_closed(self) -> None:
        await asyncio.gather(*self._tasks, return_exceptions=True)
