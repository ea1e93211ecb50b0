"""The cluster tests drive real processes through the same black-box cluster the chaos tools use."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from toxiproxy import Toxiproxy

from chaos.cluster import SECRET, Cluster, NodeProcess, free_ports, http_json, running_cluster, wait_until
from chaos.network import RaftNetwork, wire
from chaos.toxiproxy_server import ServerThread

__all__ = [
    "SECRET",
    "Cluster",
    "NodeProcess",
    "free_ports",
    "http_json",
    "partitionable_cluster",
    "running_cluster",
    "wait_until",
]


@contextmanager
def partitionable_cluster(
    root: Path, size: int = 3, extra_args: list[str] | None = None
) -> Iterator[tuple[Cluster, RaftNetwork]]:
    """A running cluster behind one Toxiproxy proxy per node pair (served from this process, on 127.0.0.1).

    Every node is killed by PID on the way out, also when the body fails (whose node logs then go to stderr)."""
    with ServerThread() as server:
        api = Toxiproxy()
        api.update_api_consumer(server.host, server.port)
        cluster = Cluster(root, size, extra_args or [])
        network = wire(api, cluster)
        try:
            cluster.start_all()
            cluster.wait_ready()
            yield cluster, network
        except BaseException:
            sys.stderr.write(cluster.logs())
            raise
        finally:
            cluster.close()
