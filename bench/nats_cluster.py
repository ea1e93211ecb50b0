"""A 3-node NATS JetStream cluster on 127.0.0.1 (Debian's nats-server 2.9), in a temporary directory."""

from __future__ import annotations

import json
import shutil
import urllib.request
from functools import partial
from pathlib import Path

from bench.procs import Procs
from chaos.cluster import free_ports, wait_until

NODES = 3

#: NATS 2.9's file store acknowledges a publish once a majority of the stream's replicas stored it, written
#: to the operating system (page cache); it fsyncs on a timer (``sync_interval``, 2 minutes by default, not
#: configurable before 2.10). A power cut of every node can lose acknowledged messages.
DURABILITY = "JetStream R3 file store: PubAck after a majority wrote it to the page cache; fsync every 2 min"


def nats_server() -> str:
    path = shutil.which("nats-server")
    if path is None:
        raise RuntimeError("nats-server is not installed (run bench/install.sh)")
    return path


def _config(i: int, data: Path, *, client: int, route: int, monitor: int, routes: list[int]) -> str:
    peers = ", ".join(f'"nats-route://127.0.0.1:{p}"' for p in routes)
    return f"""
server_name: "n{i}"
listen: "127.0.0.1:{client}"
http: "127.0.0.1:{monitor}"
jetstream {{
    store_dir: "{data / f"n{i}"}"
    max_memory_store: 256MB
    max_file_store: 8GB
}}
cluster {{
    name: "bench"
    listen: "127.0.0.1:{route}"
    routes: [{peers}]
}}
"""


class NatsCluster:
    name = "NATS JetStream 2.9"
    durability = DURABILITY

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.procs = Procs()
        ports = free_ports(3 * NODES)
        self.client_ports = ports[:NODES]
        self.route_ports = ports[NODES : 2 * NODES]
        self.monitor_ports = ports[2 * NODES :]

    @property
    def urls(self) -> list[str]:
        return [f"nats://127.0.0.1:{p}" for p in self.client_ports]

    def start(self) -> None:
        binary = nats_server()
        for i in range(NODES):
            conf = self.workdir / f"n{i + 1}.conf"
            conf.write_text(
                _config(
                    i + 1,
                    self.workdir,
                    client=self.client_ports[i],
                    route=self.route_ports[i],
                    monitor=self.monitor_ports[i],
                    routes=[p for j, p in enumerate(self.route_ports) if j != i],
                )
            )
            self.procs.start(f"nats n{i + 1}", [binary, "-c", str(conf)], log=self.workdir / f"n{i + 1}.log")
        for port in self.monitor_ports:
            wait_until(f"NATS on monitor port {port} healthy", partial(self._healthy, port), timeout=60)

    def _healthy(self, port: int) -> bool:
        for proc in self.procs.procs:
            if not proc.running():
                raise RuntimeError(f"{proc.name} exited; see {proc.log}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/jsz", timeout=1) as r:
                info = json.load(r)
        except OSError:
            return False
        meta = info.get("meta_cluster") or {}
        return bool(meta.get("leader"))

    def stop(self) -> None:
        self.procs.stop_all()
