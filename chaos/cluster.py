"""A cluster of real node processes on 127.0.0.1, driven from outside: started, signalled and stopped by PID.

Used by the chaos tools and by the cluster tests. It knows the node only as an operator does: the
``python -m raft_queue node`` command line, its HTTP API and its data directory. Every wait polls with a
deadline; nothing sleeps and hopes.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

SECRET = "cluster-test-secret-0123456789"


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


def free_ports(n: int) -> list[int]:
    """``n`` distinct ports that are free on 127.0.0.1 now, chosen *below* the kernel's ephemeral range.

    A port from ``bind(0)`` is released before the node binds it; meanwhile any outgoing connection or proxy
    listener (which also take ephemeral ports) could grab it. Ports outside that range are never handed out
    implicitly, so only another explicit choice could collide, and each one is checked by binding it.
    """
    low = 20000
    high = min(_ephemeral_range()[0], 65536) - 1
    ports: list[int] = []
    for candidate in random.sample(range(low, high), high - low):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", candidate))
            except OSError:
                continue
        ports.append(candidate)
        if len(ports) == n:
            return ports
    raise OSError(f"no {n} free ports on 127.0.0.1 in {low}-{high}")


def wait_until(what: str, fn: Callable[[], T | None], timeout: float = 20.0, interval: float = 0.05) -> T:
    """Polls ``fn`` until it returns something other than None/False, or fails after ``timeout``."""
    deadline = time.monotonic() + timeout
    last_exc: Exception | None = None
    while True:
        try:
            value = fn()
            if value is not None and value is not False:
                return value
        except Exception as exc:
            last_exc = exc
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what} (last error: {last_exc!r})")
        time.sleep(interval)


def http_json(url: str, method: str = "GET", body: Any = None, timeout: float = 5.0) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as err:
        with err:
            raw = err.read()
        return err.code, json.loads(raw) if raw else None


def _all_threads_stopped(pid: int) -> bool:
    """Whether every thread of ``pid`` is stopped (state T or t in ``/proc/<pid>/task/<tid>/stat``), or gone."""
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except FileNotFoundError:
        return True
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/stat", encoding="ascii", errors="replace") as f:
                stat = f.read()
        except (FileNotFoundError, ProcessLookupError):
            continue  # the thread ended
        state = stat[stat.rfind(")") + 2 : stat.rfind(")") + 3]
        if state not in ("T", "t", "Z", "X"):
            return False
    return True


@dataclass
class NodeProcess:
    node_id: str
    raft_port: int
    http_port: int
    data_dir: Path
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


@dataclass
class Cluster:
    root: Path
    size: int = 3
    extra_args: list[str] = field(default_factory=list)
    data_dirs: list[Path] | None = None
    #: node index -> extra arguments for that node only (e.g. its --raft-dial-via)
    node_args: dict[int, list[str]] = field(default_factory=dict)
    nodes: list[NodeProcess] = field(default_factory=list)

    def __post_init__(self) -> None:
        ports = free_ports(2 * self.size)
        for i in range(self.size):
            data = self.data_dirs[i] if self.data_dirs else self.root / f"n{i + 1}"
            self.nodes.append(
                NodeProcess(f"n{i + 1}", ports[2 * i], ports[2 * i + 1], data, self.root / f"n{i + 1}.log")
            )

    @property
    def peers(self) -> str:
        return ",".join(f"{n.node_id}=127.0.0.1:{n.raft_port}={n.url}" for n in self.nodes)

    @property
    def urls(self) -> list[str]:
        return [n.url for n in self.nodes]

    def command(self, i: int) -> list[str]:
        n = self.nodes[i]
        return [
            sys.executable, "-m", "raft_queue", "node",
            "--node-id", n.node_id,
            "--peers", self.peers,
            "--data-dir", str(n.data_dir),
            "--cluster-secret", SECRET,
            *self.extra_args,
            *self.node_args.get(i, []),
        ]  # fmt: skip

    def start(self, i: int) -> None:
        n = self.nodes[i]
        assert not n.alive, f"{n.node_id} is already running"
        n.data_dir.mkdir(parents=True, exist_ok=True)
        n.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(n.log_path, "ab")  # noqa: SIM115 (the child owns it)
        try:
            n.proc = subprocess.Popen(self.command(i), stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        finally:
            log.close()

    def start_all(self) -> None:
        for i in range(self.size):
            self.start(i)

    def signal(self, i: int, sig: int) -> None:
        n = self.nodes[i]
        if n.proc is not None and n.proc.poll() is None:
            os.kill(n.proc.pid, sig)

    def freeze(self, i: int, timeout: float = 5.0) -> bool:
        """SIGSTOP, then wait until every thread of the process is stopped; returns whether all were seen stopped.

        A signal is delivered asynchronously: ``kill`` returns while the process may still be running (on a loaded
        machine, for a few milliseconds), and a thread inside a disk write stops only when the write returns.
        """
        n = self.nodes[i]
        if n.proc is None or n.proc.poll() is not None:
            return True
        pid = n.proc.pid
        os.kill(pid, signal.SIGSTOP)
        deadline = time.monotonic() + timeout
        while True:
            if _all_threads_stopped(pid):
                return True
            if time.monotonic() > deadline:
                return False
            time.sleep(0.001)

    def kill(self, i: int) -> None:
        """kill -9, and reap."""
        n = self.nodes[i]
        if n.proc is not None:
            if n.proc.poll() is None:
                os.kill(n.proc.pid, signal.SIGKILL)
            n.proc.wait(timeout=30)
            n.proc = None

    def stop(self, i: int, timeout: float = 20.0) -> int | None:
        """SIGTERM and wait; SIGKILL if it does not exit in time. Returns the exit code."""
        n = self.nodes[i]
        if n.proc is None:
            return None
        if n.proc.poll() is None:
            os.kill(n.proc.pid, signal.SIGTERM)
            try:
                n.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.kill(n.proc.pid, signal.SIGKILL)
                n.proc.wait(timeout=30)
        code = n.proc.returncode
        n.proc = None
        return code

    def wipe(self, i: int) -> None:
        assert not self.nodes[i].alive
        shutil.rmtree(self.nodes[i].data_dir, ignore_errors=True)

    def close(self) -> None:
        for i in range(self.size):
            self.kill(i)

    def status(self, i: int) -> dict[str, Any] | None:
        try:
            code, body = http_json(self.nodes[i].url + "/v1/cluster", timeout=2.0)
        except (OSError, ValueError):
            return None
        return body if code == 200 else None

    def leader(self, among: list[int] | None = None) -> int | None:
        """Index of the node that a majority of the live nodes agree is leader, and that says so itself."""
        idx = among if among is not None else [i for i in range(self.size) if self.nodes[i].alive]
        for i in idx:
            st = self.status(i)
            if st and st["role"] == "leader":
                return i
        return None

    def wait_for_leader(self, timeout: float = 20.0, among: list[int] | None = None) -> int:
        return wait_until("a leader", lambda: self.leader(among), timeout)

    def wait_ready(self, timeout: float = 30.0) -> int:
        """Waits until every live node is ready (leader known, caught up); returns the leader's index."""

        def ready() -> bool:
            live = [i for i in range(self.size) if self.nodes[i].alive]
            return all(http_json(self.nodes[i].url + "/readyz", timeout=2.0)[0] == 200 for i in live)

        try:
            wait_until("every live node ready", ready, timeout)
        except AssertionError as exc:
            raise AssertionError(f"{exc}; node states: {self.describe()}") from None
        return self.wait_for_leader(timeout)

    def describe(self) -> str:
        """One line per node: alive or exit code, role, leader, connected peers (for failure messages)."""
        parts = []
        for i, n in enumerate(self.nodes):
            if n.proc is None or n.proc.poll() is not None:
                parts.append(f"{n.node_id}: not running (exit {n.proc.returncode if n.proc else None})")
                continue
            st = self.status(i)
            if st is None:
                parts.append(f"{n.node_id}: no answer")
                continue
            connected = [m["node_id"] for m in st.get("members", []) if m.get("connected")]
            parts.append(
                f"{n.node_id}: {st.get('role')} term {st.get('term')} leader {st.get('leader_id')} "
                f"ready {st.get('ready')} connected {connected}"
            )
        return "; ".join(parts)

    def logs(self) -> str:
        out = []
        for n in self.nodes:
            text = n.log_path.read_text(errors="replace") if n.log_path.exists() else ""
            out.append(f"===== {n.node_id} ({n.log_path}) =====\n{text[-6000:]}")
        return "\n".join(out)


@contextmanager
def running_cluster(root: Path, size: int = 3, extra_args: list[str] | None = None) -> Iterator[Cluster]:
    cluster = Cluster(root, size, extra_args or [])
    try:
        cluster.start_all()
        cluster.wait_ready()
        yield cluster
    except BaseException:
        sys.stderr.write(cluster.logs())
        raise
    finally:
        cluster.close()
