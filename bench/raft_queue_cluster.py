"""A 3-node raft-queue cluster on 127.0.0.1 for the benchmarks (the dev cluster's launcher), and its leader.

The nodes are ``raft_queue.tools.dev_cluster``'s children (fsync on, as always) on free consecutive ports, with
their data and logs in a directory the caller owns; they are stopped by PID. ``python -m bench solo`` and the
race's raft-queue entry both start theirs here.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import socket
import sys
import threading
import time
from pathlib import Path

import aiohttp

from raft_queue.tools.dev_cluster import DevCluster, DevClusterSpec, load_or_create_secret, ready_url

NODES = 3
READY_TIMEOUT_S = 60.0


class ClusterNotReady(RuntimeError):
    """A node died, or no node answered ``/readyz`` within ``READY_TIMEOUT_S``; the nodes were stopped."""


def free_port_base(n: int) -> int:
    """A base port with n free consecutive ports (checked, not reserved)."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            base = int(s.getsockname()[1])
        if base + n < 65000 and all(_port_free(base + i) for i in range(n)):
            return base
    raise RuntimeError("no free port range found")


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


class RaftQueueCluster:
    """Started and ready once constructed (else ``ClusterNotReady``, nothing left running); ``stop`` ends it."""

    def __init__(self, workdir: Path) -> None:
        base = free_port_base(2 * NODES)
        spec = DevClusterSpec(workdir, NODES, "127.0.0.1", base, base + NODES, "warning", READY_TIMEOUT_S)
        self._cluster = DevCluster(spec, io.StringIO(), sys.stderr)
        self._cluster.start(load_or_create_secret(workdir))
        self._urls = [spec.http_url(i) for i in spec.indices]
        deadline = time.monotonic() + READY_TIMEOUT_S
        try:
            while ready_url(self._urls) is None:
                if self._cluster.first_dead() is not None or time.monotonic() > deadline:
                    raise ClusterNotReady(f"raft-queue: the cluster did not become ready (logs in {workdir}/logs)")
                threading.Event().wait(0.2)
        except BaseException:
            self._cluster.stop()
            raise

    @property
    def urls(self) -> list[str]:
        return self._urls

    def stop(self) -> None:
        self._cluster.stop()


async def leader_url(session: aiohttp.ClientSession, urls: list[str]) -> str:
    """The leader's URL as the nodes report it in ``/v1/cluster``, polled for up to 30 s."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 30
    while loop.time() < deadline:
        for url in urls:
            with contextlib.suppress(aiohttp.ClientError):
                async with session.get(f"{url}/v1/cluster") as r:
                    leader = (await r.json()).get("leader_url")
                    if leader:
                        return str(leader)
        await asyncio.sleep(0.1)
    raise RuntimeError("raft-queue: no leader within 30 s")
