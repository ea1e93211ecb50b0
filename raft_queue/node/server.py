"""Runs one node: the Raft replica and the HTTP API in one process until SIGTERM or SIGINT."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys

import uvloop
from aiohttp import web

from api import create_app
from raft_queue.config import NodeConfig
from raft_queue.node import malloc
from raft_queue.node.node import Node, StartupRefused

log = logging.getLogger("raft_queue")

EXIT_REFUSED = 3


def _setup_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    # pysyncobj logs every failed connection attempt to a peer that is down; keep them out of info logs.
    logging.getLogger("pysyncobj").setLevel(logging.WARNING)


async def _serve(config: NodeConfig) -> int:
    loop = asyncio.get_running_loop()
    try:
        node = Node(config, loop)
    except StartupRefused as exc:
        log.critical("refusing to start: %s", exc)
        return EXIT_REFUSED
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    app = create_app(node, request_timeout_s=config.request_timeout_s, max_request_bytes=config.max_request_bytes)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    try:
        site = web.TCPSite(runner, config.http_bind_host, config.http_bind_port, reuse_address=True)
        await site.start()
        log.info(
            "node %s serving HTTP on %s:%d, Raft on %s",
            config.node_id,
            config.http_bind_host,
            config.http_bind_port,
            config.raft_bind,
        )
        trimmer = asyncio.create_task(malloc.trim_forever())
        await stop.wait()
        log.info("node %s stopping", config.node_id)
        trimmer.cancel()
    finally:
        await runner.cleanup()
        await asyncio.to_thread(node.close)
    return 0


def run(config: NodeConfig) -> int:
    """Entry point used by the CLI; returns the process exit code."""
    malloc.limit_arenas()
    _setup_logging(config.log_level)
    # uvloop: the event loop's own per-request cost (selector, transports, call_soon) is several times lower than
    # asyncio's pure-Python loop, and that cost is a large share of a small request on this thread.
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(_serve(config))
