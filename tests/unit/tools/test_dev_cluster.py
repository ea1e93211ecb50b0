"""``raft-queue dev-cluster``: its arguments, the node commands it builds, the secret, and starting, watching and
stopping nodes (fake ones here: a few lines of Python that answer ``/readyz``)."""

from __future__ import annotations

import io
import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from raft_queue import cli
from raft_queue.config import ConfigError, read_secret_file
from raft_queue.tools.dev_cluster import (
    DevCluster,
    DevClusterSpec,
    busy_ports,
    child_env,
    curl_examples,
    load_or_create_secret,
    node_command,
    run_dev_cluster,
    stop_processes,
)

PEERS = "n1=127.0.0.1:7001=http://127.0.0.1:8001,n2=127.0.0.1:7002=http://127.0.0.1:8002,n3=127.0.0.1:7003=http://127.0.0.1:8003"


def one_line(error: BaseException) -> str:
    text = str(error)
    assert text and "\n" not in text and "\r" not in text
    return text


def test_dev_cluster_arguments() -> None:
    args = cli.build_parser().parse_args(["dev-cluster"])
    assert (args.data_dir, args.nodes, args.host) == (Path("data"), 3, "127.0.0.1")
    assert (args.http_base_port, args.raft_base_port) == (8001, 7001)
    args = cli.build_parser().parse_args(
        ["dev-cluster", "--data-dir", "/x", "--nodes", "5", "--http-base-port", "9001"]
    )
    assert (args.data_dir, args.nodes, args.http_base_port) == (Path("/x"), 5, 9001)


def test_node_command_parses_into_a_valid_config(tmp_path: Path) -> None:
    spec = DevClusterSpec(data_dir=tmp_path)
    secret_file = load_or_create_secret(tmp_path)
    argv = node_command(spec, 1, secret_file, python="python3")
    assert argv == [
        "python3", "-m", "raft_queue", "node",
        "--node-id", "n1",
        "--peers", PEERS,
        "--data-dir", str(tmp_path / "n1"),
        "--cluster-secret-file", str(tmp_path / "cluster-secret"),
        "--log-level", "info",
    ]  # fmt: skip
    for i in spec.indices:
        c = cli.resolve_node_config(cli.build_parser().parse_args(node_command(spec, i, secret_file)[3:]), {})
        assert (c.node_id, c.data_dir, c.raft_bind) == (f"n{i}", tmp_path / f"n{i}", f"127.0.0.1:{7000 + i}")
        assert (c.http_bind_host, c.http_bind_port) == ("127.0.0.1", 8000 + i)


@pytest.mark.parametrize(
    ("spec", "fragment"),
    [
        (DevClusterSpec(Path("d"), nodes=2), "--nodes 2: a cluster has 1, 3, 5 or 7 nodes"),
        (DevClusterSpec(Path("d"), nodes=0), "--nodes 0"),
        (DevClusterSpec(Path("d"), raft_base_port=8002), "overlapping"),
        (DevClusterSpec(Path("d"), raft_base_port=65534), "port '65536'"),
        (DevClusterSpec(Path("d"), log_level="loud"), "log level 'loud'"),
        (DevClusterSpec(Path("d"), ready_timeout_s=0), "--ready-timeout-s"),
    ],
)
def test_dev_cluster_spec_errors(spec: DevClusterSpec, fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        spec.validate()
    assert fragment in one_line(info.value)


def test_secret_is_created_once_and_kept(tmp_path: Path) -> None:
    data = tmp_path / "data"
    path = load_or_create_secret(data)
    assert path == data / "cluster-secret"
    assert path.stat().st_mode & 0o777 == 0o600
    secret = read_secret_file(path)
    assert len(secret) >= 16
    assert load_or_create_secret(data) == path and read_secret_file(path) == secret
    path.write_text("short\n")
    with pytest.raises(ConfigError, match="fewer than 16"):
        load_or_create_secret(data)


def test_child_env_drops_raft_queue_variables() -> None:
    env = child_env({"PATH": "/bin", "RAFT_QUEUE_RAFT_BIND": "0.0.0.0:1"})
    assert env == {"PATH": "/bin", "PYTHONUNBUFFERED": "1"}


def test_curl_examples_work_as_printed() -> None:
    lines = curl_examples("http://127.0.0.1:8001")
    words = [shlex.split(line) for line in lines]
    assert words[0] == ["curl", "-sS", "-X", "PUT", "http://127.0.0.1:8001/v1/queues/demo"]
    assert words[1][-1].endswith("/v1/queues/demo/messages")
    assert json.loads(words[1][words[1].index("-d") + 1]) == {"body": "hello"}
    assert words[2][-1].endswith("/v1/queues/demo/receive")
    assert json.loads(words[2][words[2].index("-d") + 1]) == {"max_messages": 1}


SLEEPER = "import signal, sys, time; signal.signal(signal.SIGTERM, {}); print('up', flush=True); time.sleep(60)"


def test_stop_processes_terms_then_kills() -> None:
    cmds = [SLEEPER.format("signal.SIG_DFL"), SLEEPER.format("signal.SIG_IGN")]
    procs = [subprocess.Popen([sys.executable, "-c", c], stdout=subprocess.PIPE) for c in cmds]
    try:
        for p in procs:
            assert p.stdout is not None and p.stdout.readline() == b"up\n"
        stop_processes(procs, grace_s=0.5)
        assert [p.returncode for p in procs] == [-signal.SIGTERM, -signal.SIGKILL]
    finally:
        for p in procs:
            p.kill()
            p.wait()
            assert p.stdout is not None
            p.stdout.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


FAKE_NODE = """
import http.server, sys
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200 if self.path == "/readyz" else 404)
        self.end_headers()
    def log_message(self, *args):
        pass
print("fake node up", flush=True)
http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
"""


class StopWhenReady(io.StringIO):
    def __init__(self, stop: threading.Event) -> None:
        super().__init__()
        self.stop = stop

    def write(self, s: str) -> int:
        if "cluster ready" in s:
            self.stop.set()
        return super().write(s)


def one_node_spec(tmp_path: Path, ready_timeout_s: float = 20.0) -> DevClusterSpec:
    return DevClusterSpec(
        tmp_path,
        nodes=1,
        http_base_port=free_port(),
        raft_base_port=free_port(),
        ready_timeout_s=ready_timeout_s,
    )


def test_dev_cluster_waits_for_ready_and_stops(tmp_path: Path) -> None:
    spec, stop = one_node_spec(tmp_path), threading.Event()
    out, err = StopWhenReady(stop), io.StringIO()
    cluster = DevCluster(
        spec, out, err, command=lambda s, i, _: [sys.executable, "-c", FAKE_NODE, str(s.http_base_port)]
    )
    cluster.start(load_or_create_secret(tmp_path))
    try:
        assert cluster.wait(stop) == 0
    finally:
        cluster.stop(grace_s=5)
    assert "cluster ready (http://127.0.0.1:" in out.getvalue()
    assert cluster.procs[1].returncode == -signal.SIGTERM
    assert "fake node up" in spec.log_file(1).read_text()


def test_dev_cluster_reports_a_dead_node(tmp_path: Path) -> None:
    spec, err = one_node_spec(tmp_path), io.StringIO()
    (tmp_path / "logs").mkdir()
    spec.log_file(1).write_text("an older run\n")
    crash = "import sys; print('boom: port taken'); sys.exit(3)"
    cluster = DevCluster(spec, io.StringIO(), err, command=lambda s, i, _: [sys.executable, "-c", crash])
    cluster.start(load_or_create_secret(tmp_path))
    try:
        assert cluster.wait(threading.Event()) == 1
    finally:
        cluster.stop()
    report = err.getvalue()
    assert "node n1 (pid" in report and "exited unexpectedly with code 3" in report
    assert "boom: port taken" in report and "an older run" not in report


def test_dev_cluster_gives_up_when_never_ready(tmp_path: Path) -> None:
    spec, err = one_node_spec(tmp_path, ready_timeout_s=0.5), io.StringIO()
    sleeper = [sys.executable, "-c", "import time; time.sleep(60)"]
    cluster = DevCluster(spec, io.StringIO(), err, command=lambda s, i, _: sleeper)
    cluster.start(load_or_create_secret(tmp_path))
    try:
        assert cluster.wait(threading.Event()) == 1
    finally:
        cluster.stop()
    assert "no node became ready within 0.5 s" in err.getvalue()


def test_dev_cluster_refuses_busy_ports(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        spec = DevClusterSpec(tmp_path, nodes=1, http_base_port=port, raft_base_port=free_port())
        assert busy_ports(spec) == [port]
        with pytest.raises(ConfigError, match=f"port\\(s\\) {port} on 127.0.0.1 already in use"):
            run_dev_cluster(spec)


RUN_WITH_FAKE_NODES = """
import sys
from pathlib import Path
from raft_queue.tools.dev_cluster import DevClusterSpec, run_dev_cluster
http_port, raft_port = int(sys.argv[2]), int(sys.argv[3])
spec = DevClusterSpec(Path(sys.argv[1]), nodes=1, http_base_port=http_port, raft_base_port=raft_port)
fake = [sys.executable, "-c", sys.argv[4], sys.argv[2]]
sys.exit(run_dev_cluster(spec, command=lambda s, i, secret: fake))
"""


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_dev_cluster_stops_on_signal(tmp_path: Path, sig: signal.Signals) -> None:
    ports = [str(free_port()), str(free_port())]
    argv = [sys.executable, "-c", RUN_WITH_FAKE_NODES, str(tmp_path), *ports, FAKE_NODE]
    with subprocess.Popen(argv, stdout=subprocess.PIPE, text=True, env=child_env(os.environ)) as proc:
        assert proc.stdout is not None
        try:
            lines = [proc.stdout.readline()]
            while "cluster ready" not in lines[-1] and lines[-1]:
                lines.append(proc.stdout.readline())
            assert "cluster ready" in lines[-1], lines
            assert "curl -sS -X PUT http://127.0.0.1:" in "".join(lines)
            proc.send_signal(sig)
            assert proc.wait(timeout=30) == 0
            assert "all nodes stopped" in proc.stdout.read()
        finally:
            proc.kill()
    node_pid = int(re.search(r"pid (\d+)", "".join(lines)).group(1))  # type: ignore[union-attr]
    with pytest.raises(ProcessLookupError):
        os.kill(node_pid, 0)
