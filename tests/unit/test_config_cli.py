"""NodeConfig validation, the ``raft-queue`` command line and dev-cluster's pieces (no real nodes started)."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
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
from raft_queue.tools.dev_cluster import child_env

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
        ["bench"],  # a repository tool now: python -m bench solo
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
