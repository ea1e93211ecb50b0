"""A 3-node RabbitMQ cluster on 127.0.0.1 (Debian's rabbitmq-server 3.10), in a temporary directory.

Each node runs ``/usr/lib/rabbitmq/bin/rabbitmq-server`` in the foreground with its own ports, data, logs and
config; the race starts its own ``epmd`` on a free port (so it owns that process too) and an Erlang cookie in
a private HOME. No plugins. Nodes 2 and 3 join node 1 with ``rabbitmqctl``.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
from functools import partial
from pathlib import Path

from bench.procs import Procs
from chaos.cluster import free_ports, wait_until

NODES = 3
RABBIT_BIN = Path("/usr/lib/rabbitmq/bin")

#: Quorum queues are Raft (Ra): a publisher confirm is sent once a majority appended the message to its WAL,
#: which Ra fsyncs (``wal_sync_method`` datasync) before it reports the write.
DURABILITY = "quorum queue, publisher confirms: confirm after a majority fsynced its Ra WAL"


class RabbitCluster:
    name = "RabbitMQ 3.10 quorum queue"
    durability = DURABILITY

    def __init__(self, workdir: Path) -> None:
        if not (RABBIT_BIN / "rabbitmq-server").exists():
            raise RuntimeError("rabbitmq-server is not installed (run bench/install.sh)")
        self.workdir = workdir
        self.procs = Procs()
        ports = free_ports(1 + 2 * NODES)
        self.epmd_port = ports[0]
        self.amqp_ports = ports[1 : 1 + NODES]
        self.dist_ports = ports[1 + NODES :]
        self.home = workdir / "home"

    def node(self, i: int) -> str:
        return f"bench{i}@localhost"

    @property
    def urls(self) -> list[str]:
        return [f"amqp://guest:guest@127.0.0.1:{p}/" for p in self.amqp_ports]

    def _env(self, i: int | None = None) -> dict[str, str]:
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(self.home),
            "LANG": "C.UTF-8",
            "ERL_EPMD_PORT": str(self.epmd_port),
            "ERL_EPMD_ADDRESS": "127.0.0.1",
            "RABBITMQ_CONF_ENV_FILE": "/dev/null",
        }
        if i is not None:
            base = self.workdir / f"n{i}"
            env |= {
                "RABBITMQ_NODENAME": self.node(i),
                "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
                "RABBITMQ_NODE_PORT": str(self.amqp_ports[i - 1]),
                "RABBITMQ_DIST_PORT": str(self.dist_ports[i - 1]),
                "RABBITMQ_MNESIA_BASE": str(base / "mnesia"),
                "RABBITMQ_LOG_BASE": str(base / "log"),
                "RABBITMQ_CONFIG_FILE": str(base / "rabbitmq.conf"),
                "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.workdir / "enabled_plugins"),
                "RABBITMQ_PID_FILE": str(base / "pid"),
                "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": "-kernel inet_dist_use_interface {127,0,0,1}",
            }
        return env

    def ctl(self, i: int, *args: str, timeout: float = 60) -> str:
        cmd = [str(RABBIT_BIN / "rabbitmqctl"), "-n", self.node(i), *args]
        done = subprocess.run(cmd, env=self._env(), capture_output=True, text=True, timeout=timeout, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"rabbitmqctl {' '.join(args)} on {self.node(i)}: {done.stderr.strip()[-500:]}")
        return done.stdout

    def start(self) -> None:
        self.home.mkdir(parents=True)
        cookie = self.home / ".erlang.cookie"
        cookie.write_text("RAFTQUEUEBENCHCOOKIE")
        cookie.chmod(0o400)
        (self.workdir / "enabled_plugins").write_text("[].\n")
        self.procs.start(
            "epmd",
            ["epmd", "-port", str(self.epmd_port), "-address", "127.0.0.1"],
            env=self._env(),
            log=self.workdir / "epmd.log",
        )
        for i in range(1, NODES + 1):
            base = self.workdir / f"n{i}"
            base.mkdir()
            (base / "rabbitmq.conf").write_text(f"listeners.tcp.default = {self.amqp_ports[i - 1]}\n")
            self.procs.start(
                f"rabbitmq {self.node(i)}",
                [str(RABBIT_BIN / "rabbitmq-server")],
                env=self._env(i),
                log=self.workdir / f"n{i}.out",
            )
        for i in range(1, NODES + 1):
            wait_until(f"{self.node(i)} started", partial(self._started, i), timeout=120, interval=0.5)
        for i in range(2, NODES + 1):
            self.ctl(i, "stop_app")
            self.ctl(i, "join_cluster", self.node(1))
            self.ctl(i, "start_app")
        wait_until("a 3-node RabbitMQ cluster", self._clustered, timeout=120, interval=0.5)

    def _started(self, i: int) -> bool:
        for proc in self.procs.procs:
            if not proc.running():
                raise RuntimeError(f"{proc.name} exited; see {proc.log}")
        try:
            self.ctl(i, "await_startup", "-t", "2", timeout=15)
        except (RuntimeError, subprocess.TimeoutExpired):
            return False
        return True

    def _clustered(self) -> bool:
        try:
            out = self.ctl(1, "cluster_status", "--formatter", "json", timeout=15)
        except (RuntimeError, subprocess.TimeoutExpired):
            return False
        running = json.loads(out).get("running_nodes", [])
        return sorted(running) == sorted(self.node(i) for i in range(1, NODES + 1))

    def stop(self) -> None:
        for i in range(NODES, 0, -1):
            with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):  # the signals below stop it anyway
                self.ctl(i, "stop", timeout=30)
        self.procs.stop_all()
