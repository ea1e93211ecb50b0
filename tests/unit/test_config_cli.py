"""NodeConfig validation, the ``raft-queue`` command line and dev-cluster's pieces (no real nodes started)."""

from __future__ import annotations

import dataclasses
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
import types
from pathlib import Path

import pytest

from raft_queue import cli
from raft_queue.config import (
    NODE_ID_RE,
    ConfigError,
    NodeConfig,
    Peer,
    parse_peers,
    read_secret_file,
)
from raft_queue.dev_cluster import (
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
SECRET = "0123456789abcdef"


def one_line(error: BaseException) -> str:
    text = str(error)
    assert text and "\n" not in text and "\r" not in text
    return text


def config(**overrides: object) -> NodeConfig:
    values: dict[str, object] = {
        "node_id": "n1",
        "peers": parse_peers(PEERS),
        "data_dir": Path("d"),
        "cluster_secret": SECRET,
    }
    return NodeConfig(**{**values, **overrides})  # type: ignore[arg-type]


@pytest.fixture(autouse=True)
def no_raft_queue_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith(cli.ENV_PREFIX):
            monkeypatch.delenv(name)


# --- config


def test_parse_peers() -> None:
    peers = parse_peers(" n1=127.0.0.1:7001=http://127.0.0.1:8001/ , n2=host-b:7002=http://host-b:8002")
    assert peers == (
        Peer("n1", "127.0.0.1:7001", "http://127.0.0.1:8001"),
        Peer("n2", "host-b:7002", "http://host-b:8002"),
    )


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("", "empty"),
        (" , ", "empty"),
        ("n1", "is not ID=RAFT_HOST:PORT=HTTP_URL"),
        ("n1=127.0.0.1:7001", "is not ID=RAFT_HOST:PORT=HTTP_URL"),
        ("=127.0.0.1:7001=http://h:8001", "is not ID=RAFT_HOST:PORT=HTTP_URL"),
        ("N1=127.0.0.1:7001=http://h:8001", "node id 'N1'"),
        ("n_1=127.0.0.1:7001=http://h:8001", "node id 'n_1'"),
        ("-n1=127.0.0.1:7001=http://h:8001", "node id '-n1'"),
        ("n" * 64 + "=127.0.0.1:7001=http://h:8001", "1-63"),
        ("n1=127.0.0.1=http://h:8001", "raft address of n1: '127.0.0.1' is not HOST:PORT"),
        ("n1=127.0.0.1:0=http://h:8001", "port '0'"),
        ("n1=127.0.0.1:65536=http://h:8001", "port '65536'"),
        ("n1=127.0.0.1:x=http://h:8001", "port 'x'"),
        ("n1=a b:7001=http://h:8001", "is not HOST:PORT"),
        ("n1=127.0.0.1:7001=https://h:8001", "http url of n1: 'https://h:8001' must be http://HOST:PORT"),
        ("n1=127.0.0.1:7001=http://h", "must be http://HOST:PORT"),
        ("n1=127.0.0.1:7001=http://:8001", "must be http://HOST:PORT"),
        ("n1=127.0.0.1:7001=http://h:99999", "http url of n1"),
        ("n1=127.0.0.1:7001=http://h:8001/api", "no path"),
        ("n1=a:1=http://a:2,n1=b:1=http://b:2", "duplicate node id 'n1'"),
        ("n1=a:1=http://a:2,n2=a:1=http://b:2", "duplicate raft address 'a:1'"),
        ("n1=a:1=http://a:2,n2=b:1=http://a:2/", "duplicate http url 'http://a:2'"),
        ("n1=a:1=http://a:2\nn2=b:1=http://b:2", "http url of n1"),
        ("n1=a:1=http://a:80\t01", "http url of n1"),
    ],
)
def test_parse_peers_errors(text: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_peers(text)
    assert fragment in one_line(info.value)


@pytest.mark.parametrize("node_id", ["n1", "raft-queue-0", "0", "a" * 63, "node-10"])
def test_node_id_pattern_accepts(node_id: str) -> None:
    assert NODE_ID_RE.match(node_id)


def test_node_config_defaults_and_properties() -> None:
    c = config(node_id="n2")
    assert c.raft_bind == "127.0.0.1:7002"
    assert (c.http_bind_host, c.http_bind_port) == ("127.0.0.1", 8002)
    assert c.self_peer == Peer("n2", "127.0.0.1:7002", "http://127.0.0.1:8002")
    assert [p.node_id for p in c.other_peers] == ["n1", "n3"]
    assert (c.log_level, c.request_timeout_s, c.max_request_bytes) == ("info", 10.0, 16 * 1024 * 1024)
    assert (c.election_timeout_min_s, c.election_timeout_max_s) == (0.4, 1.2)
    assert SECRET not in repr(c)
    with pytest.raises(dataclasses.FrozenInstanceError):
        c.node_id = "n3"  # type: ignore[misc]


def test_single_node_cluster_is_valid() -> None:
    c = config(peers=parse_peers("n1=127.0.0.1:7001=http://127.0.0.1:8001"))
    assert c.other_peers == ()


def peers_of(size: int) -> tuple[Peer, ...]:
    return tuple(Peer(f"n{i}", f"h:{7000 + i}", f"http://h:{8000 + i}") for i in range(1, size + 1))


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        ({"node_id": "n9"}, "node id 'n9' is not among the peers (n1, n2, n3)"),
        ({"peers": ()}, "the peer list is empty"),
        ({"peers": peers_of(2)}, "an even number of nodes tolerates no more failures than one fewer"),
        ({"peers": peers_of(4)}, "a cluster of 4 nodes: an even number of nodes tolerates"),
        ({"peers": peers_of(9)}, "a cluster of 9 nodes: a cluster has 1, 3, 5 or 7 members"),
        ({"peers": peers_of(3) + peers_of(1)}, "duplicate node id 'n1'"),
        ({"cluster_secret": "x" * 15}, "cluster secret: 15 characters, need at least 16"),
        ({"log_level": "trace"}, "log level 'trace' is not one of debug, info, warning, error"),
        ({"request_timeout_s": 0.0}, "request timeout"),
        ({"request_timeout_s": float("nan")}, "request timeout"),
        ({"max_request_bytes": 0}, "max request bytes"),
        ({"election_timeout_min_s": 0.1}, "election timeout min: 0.1 s must be more than 0.1 s"),
        ({"election_timeout_min_s": 1.2}, "election timeout min (1.2 s) must be less than max (1.2 s)"),
        ({"election_timeout_max_s": float("inf")}, "finite"),
        ({"raft_bind": "0.0.0.0"}, "raft bind: '0.0.0.0' is not HOST:PORT"),
        ({"http_bind_port": 70000}, "http bind: port 70000"),
        ({"transaction_retention_s": 59.0}, "transaction retention: 59.0 s must be from 60 s"),
        ({"transaction_retention_s": float("nan")}, "transaction retention"),
        ({"transaction_retention_s": 4e7}, "transaction retention"),
    ],
)
def test_node_config_errors(overrides: dict[str, object], fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        config(**overrides)
    assert fragment in one_line(info.value)


def test_config_error_is_a_value_error() -> None:
    assert issubclass(ConfigError, ValueError)


def test_read_secret_file(tmp_path: Path) -> None:
    path = tmp_path / "secret"
    path.write_bytes(b"  s3cret with spaces  \r\n")
    assert read_secret_file(path) == "  s3cret with spaces  "
    path.write_text("abc\n\n")
    assert read_secret_file(path) == "abc"
    with pytest.raises(ConfigError) as info:
        read_secret_file(tmp_path / "missing")
    assert "cannot read cluster secret file" in one_line(info.value)
    assert "No such file" in str(info.value)


# --- the node command line


def resolve(argv: list[str], env: dict[str, str] | None = None) -> NodeConfig:
    return cli.resolve_node_config(cli.build_parser().parse_args(["node", *argv]), env or {})


BASE = ["--node-id", "n1", "--peers", PEERS, "--data-dir", "/d", "--cluster-secret", SECRET]


def test_flags_only() -> None:
    c = resolve(
        [
            *BASE,
            "--raft-bind", "0.0.0.0:7101",
            "--http-bind", "[::]:8101",
            "--log-level", "DEBUG",
            "--request-timeout-s", "2.5",
            "--max-request-bytes", "1024",
            "--election-timeout-min-s", "0.5",
            "--election-timeout-max-s", "2",
        ]
    )  # fmt: skip
    assert c == NodeConfig(
        node_id="n1",
        peers=parse_peers(PEERS),
        data_dir=Path("/d"),
        cluster_secret=SECRET,
        raft_bind="0.0.0.0:7101",
        http_bind_host="::",
        http_bind_port=8101,
        log_level="debug",
        request_timeout_s=2.5,
        max_request_bytes=1024,
        election_timeout_min_s=0.5,
        election_timeout_max_s=2.0,
    )


def test_env_only() -> None:
    env = {
        "RAFT_QUEUE_NODE_ID": "n3",
        "RAFT_QUEUE_PEERS": PEERS,
        "RAFT_QUEUE_DATA_DIR": "/data",
        "RAFT_QUEUE_CLUSTER_SECRET": SECRET,
        "RAFT_QUEUE_HTTP_BIND": "0.0.0.0:9000",
        "RAFT_QUEUE_MAX_REQUEST_BYTES": "2048",
    }
    c = resolve([], env)
    assert (c.node_id, c.data_dir, c.raft_bind) == ("n3", Path("/data"), "127.0.0.1:7003")
    assert (c.http_bind_host, c.http_bind_port, c.max_request_bytes) == ("0.0.0.0", 9000, 2048)


@pytest.mark.parametrize(
    ("flag", "attribute", "env_value", "env_expected", "flag_value", "flag_expected"),
    [
        ("--node-id", "node_id", "n2", "n2", "n3", "n3"),
        ("--data-dir", "data_dir", "/env", Path("/env"), "/flag", Path("/flag")),
        ("--raft-bind", "raft_bind", "0.0.0.0:1", "0.0.0.0:1", "0.0.0.0:2", "0.0.0.0:2"),
        ("--http-bind", "http_bind_port", "0.0.0.0:1", 1, "0.0.0.0:2", 2),
        ("--log-level", "log_level", "error", "error", "warning", "warning"),
        ("--request-timeout-s", "request_timeout_s", "1", 1.0, "3", 3.0),
        ("--max-request-bytes", "max_request_bytes", "1", 1, "3", 3),
        ("--election-timeout-min-s", "election_timeout_min_s", "0.2", 0.2, "0.3", 0.3),
        ("--election-timeout-max-s", "election_timeout_max_s", "5", 5.0, "6", 6.0),
        ("--transaction-retention-s", "transaction_retention_s", "3600", 3600.0, "86400", 86400.0),
    ],
)
def test_flag_beats_env(
    flag: str, attribute: str, env_value: str, env_expected: object, *, flag_value: str, flag_expected: object
) -> None:
    base = BASE[:]
    if flag in base:
        del base[base.index(flag) : base.index(flag) + 2]
    env = {cli.env_var(flag): env_value}
    assert getattr(resolve(base, env), attribute) == env_expected
    assert getattr(resolve([*base, flag, flag_value], env), attribute) == flag_expected


def test_flag_peers_beat_env_peers() -> None:
    env = {"RAFT_QUEUE_PEERS": "n1=h:1=http://h:2"}
    assert len(resolve(BASE, env).peers) == 3
    assert len(resolve([a for a in BASE if a not in ("--peers", PEERS)], env).peers) == 1


def test_empty_env_counts_as_unset() -> None:
    c = resolve(BASE, {"RAFT_QUEUE_LOG_LEVEL": "", "RAFT_QUEUE_RAFT_BIND": ""})
    assert (c.log_level, c.raft_bind) == ("info", "127.0.0.1:7001")


def test_secret_sources(tmp_path: Path) -> None:
    file = tmp_path / "secret"
    file.write_text("from-the-file-0123456789\n")
    no_secret = BASE[:-2]
    assert resolve([*no_secret, "--cluster-secret-file", str(file)]).cluster_secret == "from-the-file-0123456789"
    env = {"RAFT_QUEUE_CLUSTER_SECRET_FILE": str(file)}
    assert resolve(no_secret, env).cluster_secret == "from-the-file-0123456789"
    assert resolve(BASE, env).cluster_secret == SECRET  # a flag beats either variable
    assert resolve(no_secret, {"RAFT_QUEUE_CLUSTER_SECRET": SECRET}).cluster_secret == SECRET


@pytest.mark.parametrize(
    ("argv", "env", "fragment"),
    [
        ([], {}, "missing --node-id (or RAFT_QUEUE_NODE_ID)"),
        (["--node-id", "n1"], {}, "missing --peers (or RAFT_QUEUE_PEERS)"),
        (["--node-id", "n1", "--peers", PEERS], {}, "missing --data-dir"),
        (BASE[:-2], {}, "missing --cluster-secret-file or --cluster-secret"),
        (
            [*BASE, "--cluster-secret-file", "/x"],
            {},
            "give --cluster-secret or --cluster-secret-file, not both",
        ),
        (
            BASE[:-2],
            {"RAFT_QUEUE_CLUSTER_SECRET": SECRET, "RAFT_QUEUE_CLUSTER_SECRET_FILE": "/x"},
            "give RAFT_QUEUE_CLUSTER_SECRET or RAFT_QUEUE_CLUSTER_SECRET_FILE, not both",
        ),
        ([*BASE[:-2], "--cluster-secret-file", "/nonexistent/s"], {}, "cannot read cluster secret file"),
        ([*BASE[:-2], "--cluster-secret", "short"], {}, "need at least 16"),
        (["--node-id", "n1", "--peers", "n1=x"], {}, "--peers: peer entry 'n1=x' is not"),
        (["--node-id", "n1"], {"RAFT_QUEUE_PEERS": "n1=x"}, "RAFT_QUEUE_PEERS: peer entry 'n1=x'"),
        ([*BASE, "--http-bind", "8000"], {}, "--http-bind: '8000' is not HOST:PORT"),
        ([*BASE, "--raft-bind", "h:0"], {}, "--raft-bind: port '0'"),
        ([*BASE, "--request-timeout-s", "soon"], {}, "--request-timeout-s: 'soon' is not a number"),
        (
            BASE,
            {"RAFT_QUEUE_MAX_REQUEST_BYTES": "1.5"},
            "RAFT_QUEUE_MAX_REQUEST_BYTES: '1.5' is not a whole number",
        ),
        ([*BASE, "--election-timeout-min-s", "2"], {}, "must be less than max"),
    ],
)
def test_node_config_cli_errors(argv: list[str], env: dict[str, str], fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        resolve(argv, env)
    assert fragment in one_line(info.value)


@pytest.mark.parametrize(
    "argv",
    [
        ["node"],
        ["node", *BASE[:-1], "short"],
        ["node", *BASE, "--peers", "n1=127.0.0.1:7001=http://127.0.0.1:8001,n2=h:1=http://h:2"],
        ["node", "--no-such-flag"],
        ["node", *BASE, "stray"],
        ["node", "--node-id"],
        [],
        ["no-such-command"],
        ["bench", "--in-flight", "0"],
        ["bench", "--in-flight", "one"],
        ["dev-cluster", "--nodes", "2"],
        ["dev-cluster", "--nodes", "three"],
    ],
)
def test_main_errors_are_one_line(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(argv) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.count("\n") == 1 and err.startswith("raft-queue: error: ")
    assert "Traceback" not in err


def test_main_env_error(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("RAFT_QUEUE_PEERS", "n1=127.0.0.1:7001=http://127.0.0.1:8001\nextra")
    assert cli.main(["node", "--node-id", "n1"]) == 2
    assert capsys.readouterr().err.count("\n") == 1


def test_main_runs_the_server(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[NodeConfig] = []
    server = types.ModuleType("raft_queue.node.server")

    def run(c: NodeConfig) -> int:
        seen.append(c)
        return 7

    server.run = run  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "raft_queue.node.server", server)
    monkeypatch.setenv("RAFT_QUEUE_NODE_ID", "n2")
    assert cli.main(["node", *BASE[2:]]) == 7
    assert [c.node_id for c in seen] == ["n2"]


def test_python_m_raft_queue_without_traceback() -> None:
    env = child_env(os.environ)
    proc = subprocess.run(
        [sys.executable, "-m", "raft_queue", "node", "--peers", "n1=bad"],
        capture_output=True, text=True, env=env, timeout=60, check=False,
    )  # fmt: skip
    assert proc.returncode == 2
    assert proc.stderr.startswith("raft-queue: error: ") and proc.stderr.count("\n") == 1


def test_help_names_every_env_var(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    assert cli.main(["node", "--help"]) == 0
    out = capsys.readouterr().out
    for flag, env in cli.node_env_vars():
        assert flag in out and f"[env: {env}]" in out


def test_every_node_config_field_has_a_flag() -> None:
    flags = {flag for flag, _ in cli.node_env_vars()}
    for f in dataclasses.fields(NodeConfig):
        name = {"http_bind_host": "http_bind", "http_bind_port": "http_bind"}.get(f.name, f.name)
        assert "--" + name.replace("_", "-") in flags
    assert "--cluster-secret-file" in flags
    assert all(env == "RAFT_QUEUE_" + flag[2:].upper().replace("-", "_") for flag, env in cli.node_env_vars())


# --- dev-cluster


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
from raft_queue.dev_cluster import DevClusterSpec, run_dev_cluster
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


def test_trailing_newlines_are_not_accepted_in_ids_and_hosts() -> None:
    with pytest.raises(ConfigError):
        parse_peers("n1\n=127.0.0.1:7001=http://127.0.0.1:8001")
    with pytest.raises(ConfigError):
        parse_peers("n1=127.0.0.1\n:7001=http://127.0.0.1:8001")


def test_raft_dial_via_parses_and_names_only_other_peers() -> None:
    from raft_queue.config import parse_dial_via

    assert parse_dial_via("n2=127.0.0.1:9002, n3=127.0.0.1:9003") == (
        ("n2", ("127.0.0.1", 9002)),
        ("n3", ("127.0.0.1", 9003)),
    )
    with pytest.raises(ConfigError, match="ID=HOST:PORT"):
        parse_dial_via("127.0.0.1:9002")
