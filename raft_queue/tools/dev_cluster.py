"""``raft-queue dev-cluster``: a local N-node cluster of child processes, for development.

Node ``i`` is ``python -m raft_queue node`` with id ``n{i}``, data in ``DATA/n{i}``, output appended to
``DATA/logs/n{i}.log``. The cluster secret is generated once into ``DATA/cluster-secret`` (mode 0600) and
handed to the nodes as a file, so a rerun finds the same secret next to the same data. Children run in their
own session: a terminal Ctrl-C reaches only this process, which then stops each child by PID.
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from types import FrameType
from typing import TextIO
from urllib.error import HTTPError, URLError
from urllib.request import urlopen

from raft_queue import config as cfg
from raft_queue.config import ENV_PREFIX, ConfigError

SECRET_FILE_NAME = "cluster-secret"
STOP_GRACE_S = 10.0
LOG_TAIL_LINES = 20


@dataclass(frozen=True)
class DevClusterSpec:
    """What ``raft-queue dev-cluster`` was asked to run."""

    data_dir: Path
    nodes: int = 3
    host: str = "127.0.0.1"
    http_base_port: int = 8001
    raft_base_port: int = 7001
    log_level: str = "info"
    ready_timeout_s: float = 60.0

    def node_id(self, i: int) -> str:
        return f"n{i}"

    def http_url(self, i: int) -> str:
        return f"http://{self.host}:{self.http_base_port + i - 1}"

    def raft_address(self, i: int) -> str:
        return f"{self.host}:{self.raft_base_port + i - 1}"

    def node_data_dir(self, i: int) -> Path:
        return self.data_dir / self.node_id(i)

    def log_file(self, i: int) -> Path:
        return self.data_dir / "logs" / f"{self.node_id(i)}.log"

    @property
    def indices(self) -> range:
        return range(1, self.nodes + 1)

    def peers_text(self) -> str:
        return ",".join(f"{self.node_id(i)}={self.raft_address(i)}={self.http_url(i)}" for i in self.indices)

    def validate(self) -> None:
        """Raise ``ConfigError`` unless every node of this cluster would get a valid ``NodeConfig``."""
        if self.nodes not in cfg.CLUSTER_SIZES:
            raise ConfigError(f"--nodes {self.nodes}: a cluster has 1, 3, 5 or 7 nodes")
        ports = [p + i - 1 for p in (self.raft_base_port, self.http_base_port) for i in self.indices]
        if len(set(ports)) != len(ports):
            raise ConfigError("--raft-base-port and --http-base-port give overlapping port ranges")
        if not self.ready_timeout_s > 0:
            raise ConfigError(f"--ready-timeout-s {self.ready_timeout_s}: must be positive")
        peers = cfg.parse_peers(self.peers_text())
        for i in self.indices:
            secret = "x" * cfg.MIN_SECRET_LEN
            cfg.NodeConfig(self.node_id(i), peers, self.node_data_dir(i), secret, log_level=self.log_level)


def load_or_create_secret(data_dir: Path) -> Path:
    """Return ``DATA/cluster-secret``, creating it (mode 0600, random) unless it exists; check it."""
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = data_dir / SECRET_FILE_NAME
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        if len(cfg.read_secret_file(path)) < cfg.MIN_SECRET_LEN:
            short = f"holds fewer than {cfg.MIN_SECRET_LEN} characters"
            raise ConfigError(f"cluster secret file {str(path)!r} {short}; delete it to make a new one") from None
        return path
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        os.fchmod(f.fileno(), 0o600)
        f.write(secrets.token_urlsafe(32) + "\n")
    return path


def node_command(spec: DevClusterSpec, i: int, secret_file: Path, python: str = sys.executable) -> list[str]:
    """The command line that runs node ``i``; bind addresses default to its own peer entry."""
    return [
        python, "-m", "raft_queue", "node",
        "--node-id", spec.node_id(i),
        "--peers", spec.peers_text(),
        "--data-dir", str(spec.node_data_dir(i)),
        "--cluster-secret-file", str(secret_file),
        "--log-level", spec.log_level,
    ]  # fmt: skip


def child_env(environ: Mapping[str, str]) -> dict[str, str]:
    """The parent's environment minus ``RAFT_QUEUE_*`` (which would leak into every node), unbuffered."""
    env = {k: v for k, v in environ.items() if not k.startswith(ENV_PREFIX)}
    env["PYTHONUNBUFFERED"] = "1"
    return env


def busy_ports(spec: DevClusterSpec) -> list[int]:
    """Ports of this cluster that something already listens on (a cluster still running, say)."""
    busy = []
    for port in [p + i - 1 for p in (spec.raft_base_port, spec.http_base_port) for i in spec.indices]:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind((spec.host, port))
            except OSError:
                busy.append(port)
    return busy


def stop_processes(procs: list[subprocess.Popen[bytes]], grace_s: float = STOP_GRACE_S) -> None:
    """SIGTERM every live process, wait up to ``grace_s`` in all, then SIGKILL whatever is left."""
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    for proc in procs:
        try:
            proc.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def ready_url(urls: list[str], timeout_s: float = 1.0) -> str | None:
    """The first base URL whose ``/readyz`` answers 200, or None."""
    for url in urls:
        try:
            with urlopen(f"{url}/readyz", timeout=timeout_s) as resp:
                if resp.status == 200:
                    return url
        except HTTPError as e:
            e.close()
        except (URLError, OSError):
            pass
    return None


CommandFactory = Callable[[DevClusterSpec, int, Path], list[str]]


class DevCluster:
    """The running children of one dev cluster."""

    def __init__(self, spec: DevClusterSpec, out: TextIO, err: TextIO, command: CommandFactory = node_command) -> None:
        self.spec, self.out, self.err, self.command = spec, out, err, command
        self.procs: dict[int, subprocess.Popen[bytes]] = {}
        self.log_offsets: dict[int, int] = {}

    def start(self, secret_file: Path) -> None:
        env = child_env(os.environ)
        for i in self.spec.indices:
            self.spec.node_data_dir(i).mkdir(mode=0o700, parents=True, exist_ok=True)
            log = self.spec.log_file(i)
            log.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            with log.open("ab") as f:
                self.log_offsets[i] = f.tell()
                self.procs[i] = subprocess.Popen(
                    self.command(self.spec, i, secret_file),
                    stdin=subprocess.DEVNULL,
                    stdout=f,
                    stderr=subprocess.STDOUT,
                    env=env,
                    start_new_session=True,
                )

    def first_dead(self) -> int | None:
        return next((i for i, proc in self.procs.items() if proc.poll() is not None), None)

    def report_death(self, i: int) -> None:
        proc, log = self.procs[i], self.spec.log_file(i)
        node = self.spec.node_id(i)
        print(f"node {node} (pid {proc.pid}) exited unexpectedly with code {proc.returncode}", file=self.err)
        print(f"  last lines of {log}:", file=self.err)
        with log.open("rb") as f:
            f.seek(self.log_offsets[i])
            for line in f.read().decode(errors="replace").splitlines()[-LOG_TAIL_LINES:]:
                print(f"    {line}", file=self.err)
        print("stopping the other nodes", file=self.err, flush=True)

    def wait(self, stop: threading.Event) -> int:
        """Wait for readiness, then until ``stop`` is set (0) or a node dies (1)."""
        urls = [self.spec.http_url(i) for i in self.spec.indices]
        deadline, ready = time.monotonic() + self.spec.ready_timeout_s, False
        while not stop.is_set():
            if (dead := self.first_dead()) is not None:
                self.report_death(dead)
                return 1
            if not ready:
                if (url := ready_url(urls)) is not None:
                    ready = True
                    msg = f"cluster ready ({url}/readyz answered 200); Ctrl-C stops it"
                    print(msg, file=self.out, flush=True)
                elif time.monotonic() > deadline:
                    logs = self.spec.log_file(1).parent
                    msg = f"no node became ready within {self.spec.ready_timeout_s:g} s; see the logs in {logs}"
                    print(msg, file=self.err, flush=True)
                    return 1
            stop.wait(0.25 if not ready else 0.5)
        return 0

    def stop(self, grace_s: float = STOP_GRACE_S) -> None:
        stop_processes(list(self.procs.values()), grace_s)


def curl_examples(url: str) -> list[str]:
    """Create a queue, enqueue, receive, show the cluster: shell commands that work as printed."""
    post = "curl -sS -X POST -H 'Content-Type: application/json'"
    return [
        f"curl -sS -X PUT {url}/v1/queues/demo",
        f"""{post} -d '{{"body":"hello"}}' {url}/v1/queues/demo/messages""",
        f"""{post} -d '{{"max_messages":1}}' {url}/v1/queues/demo/receive""",
        f"curl -sS {url}/v1/cluster",
    ]


def print_banner(spec: DevClusterSpec, cluster: DevCluster, out: TextIO) -> None:
    """Node URLs and a curl session that works as printed."""
    print(f"raft-queue dev cluster: {spec.nodes} node(s), data in {spec.data_dir}", file=out)
    for i, proc in cluster.procs.items():
        node = f"{spec.node_id(i)}  {spec.http_url(i)}  raft {spec.raft_address(i)}  pid {proc.pid}"
        print(f"  {node}  log {spec.log_file(i)}", file=out)
    print("try it (any node accepts any request):", file=out)
    for line in curl_examples(spec.http_url(1)):
        print(f"  {line}", file=out)
    print(f"waiting up to {spec.ready_timeout_s:g} s for a node to be ready...", file=out, flush=True)


def run_dev_cluster(
    spec: DevClusterSpec,
    out: TextIO = sys.stdout,
    err: TextIO = sys.stderr,
    command: CommandFactory = node_command,
) -> int:
    """Run the cluster until SIGINT/SIGTERM (exit 0) or a node dies or never gets ready (exit 1)."""
    spec = replace(spec, data_dir=spec.data_dir.absolute())
    spec.validate()
    if busy := busy_ports(spec):
        ports = ", ".join(map(str, busy))
        raise ConfigError(f"port(s) {ports} on {spec.host} already in use (is a cluster still running?)")
    secret_file = load_or_create_secret(spec.data_dir)
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    cluster = DevCluster(spec, out, err, command)
    try:
        cluster.start(secret_file)
        print_banner(spec, cluster, out)
        return cluster.wait(stop)
    finally:
        cluster.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        print("all nodes stopped", file=out, flush=True)
