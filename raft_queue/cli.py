"""The ``raft-queue`` command line: ``node`` runs one cluster member, ``dev-cluster`` a local cluster.

Every ``node`` flag can also come from an environment variable ``RAFT_QUEUE_<FLAG_IN_UPPER_SNAKE>``; a flag
wins over its variable, and an empty value counts as unset. Any usage or configuration error is one line on
stderr, ``raft-queue: error: <message>``, and exit status 2.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

from raft_queue import config as cfg
from raft_queue.config import ENV_PREFIX, ConfigError, NodeConfig

PROG = "raft-queue"
__all__ = ["ENV_PREFIX", "build_parser", "env_var", "main", "node_env_vars", "resolve_node_config"]


@dataclass(frozen=True)
class _Option:
    flag: str
    metavar: str
    help: str


NODE_OPTIONS = (
    _Option("--node-id", "ID", "this node's id, one of the ids in --peers (required)"),
    _Option("--peers", "LIST", "every member, this one too: ID=RAFT_HOST:PORT=HTTP_URL[,...] (required)"),
    _Option("--data-dir", "DIR", "directory for this node's Raft log and queue data (required)"),
    _Option("--raft-bind", "HOST:PORT", "where to listen for Raft (default: own raft address in --peers)"),
    _Option("--http-bind", "HOST:PORT", "where to serve HTTP (default: host and port of own http url)"),
    _Option(
        "--cluster-secret",
        "SECRET",
        "secret shared by all members, at least 16 characters; a command line is visible to other "
        "local users, so prefer --cluster-secret-file",
    ),
    _Option("--cluster-secret-file", "FILE", "file holding the cluster secret (trailing newline ignored)"),
    _Option("--log-level", "LEVEL", "debug, info, warning or error (default: info)"),
    _Option("--request-timeout-s", "SECONDS", "how long a request waits for its commit (default: 10)"),
    _Option("--max-request-bytes", "BYTES", "largest request body accepted, else 413 (default: 16 MiB)"),
    _Option("--election-timeout-min-s", "SECONDS", "shortest Raft election timeout, over 0.1 (default: 0.4)"),
    _Option("--election-timeout-max-s", "SECONDS", "longest Raft election timeout (default: 1.2)"),
    _Option(
        "--snapshot-every-entries",
        "N",
        "snapshot the state and trim the Raft log once it holds N entries (default: 20000)",
    ),
    _Option(
        "--snapshot-journal-mb",
        "MIB",
        "also snapshot once the Raft journal holds this many MiB (default: 64)",
    ),
    _Option(
        "--snapshot-min-interval-s",
        "SECONDS",
        "also snapshot when this long has passed since the last one (default: 600)",
    ),
    _Option(
        "--transaction-retention-s",
        "SECONDS",
        "how long a decided transaction is remembered, so a retry with its ID returns the original outcome "
        "(default: 604800, 7 days)",
    ),
    _Option(
        "--raft-dial-via",
        "ID=HOST:PORT,...",
        "dial these peers' Raft ports through other addresses, e.g. one proxy per node pair for network fault "
        "tests (default: none)",
    ),
    _Option(
        "--fsync",
        "on|off",
        "fsync the Raft journal before acknowledging (default: on). 'off' is UNSAFE: acknowledged writes "
        "are lost on power failure; it exists only to show what the power-loss test catches",
    ),
)


def env_var(flag: str) -> str:
    """``--node-id`` -> ``RAFT_QUEUE_NODE_ID``."""
    return ENV_PREFIX + flag.removeprefix("--").upper().replace("-", "_")


def node_env_vars() -> list[tuple[str, str]]:
    """Every ``node`` flag with its environment variable."""
    return [(opt.flag, env_var(opt.flag)) for opt in NODE_OPTIONS]


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors become one-line ``ConfigError``s."""

    def error(self, message: str) -> NoReturn:
        raise ConfigError(f"{message} (see '{self.prog} --help')")


def build_parser() -> argparse.ArgumentParser:
    """The full ``raft-queue`` parser."""
    parser = _Parser(prog=PROG, description="A Raft-replicated durable message queue.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    node = sub.add_parser(
        "node",
        help="run one cluster member",
        description="Run one cluster member. Every flag may instead be set in the environment variable "
        "named after it; a flag wins over its variable, and an empty value counts as unset.",
    )
    for opt in NODE_OPTIONS:
        node.add_argument(opt.flag, metavar=opt.metavar, help=f"{opt.help} [env: {env_var(opt.flag)}]")
    dev = sub.add_parser(
        "dev-cluster",
        help="run a local cluster of child processes until Ctrl-C",
        description="Run a local cluster: node i is n{i} with data in DATA_DIR/n{i}, HTTP on "
        "HTTP_BASE_PORT+i-1 and Raft on RAFT_BASE_PORT+i-1. The cluster secret is created once in "
        "DATA_DIR/cluster-secret, so a rerun keeps both secret and data. Ctrl-C or SIGTERM stops every node.",
    )
    dev.add_argument("--data-dir", type=Path, default=Path("data"), help="the nodes' data (default: ./data)")
    dev.add_argument("--nodes", type=int, default=3, help="how many nodes: 1, 3, 5 or 7 (default: 3)")
    dev.add_argument("--http-base-port", type=int, default=8001, help="HTTP port of n1 (default: 8001)")
    dev.add_argument("--raft-base-port", type=int, default=7001, help="Raft port of n1 (default: 7001)")
    dev.add_argument("--host", default="127.0.0.1", help="address to bind and advertise (default: 127.0.0.1)")
    dev.add_argument("--log-level", default="info", help="the nodes' log level (default: info)")
    dev.add_argument("--ready-timeout-s", type=float, default=60.0, help="wait this long for readiness (60)")
    return parser


def _dest(flag: str) -> str:
    return flag.removeprefix("--").replace("-", "_")


def _lookup(args: argparse.Namespace, environ: Mapping[str, str], flag: str) -> tuple[str, str] | None:
    """(value, where it came from) for a flag, the flag beating its variable; None when neither is set."""
    value: str | None = getattr(args, _dest(flag))
    if value:
        return value, flag
    if value := environ.get(env_var(flag)):
        return value, env_var(flag)
    return None


def _required(args: argparse.Namespace, environ: Mapping[str, str], flag: str) -> tuple[str, str]:
    if (found := _lookup(args, environ, flag)) is None:
        raise ConfigError(f"missing {flag} (or {env_var(flag)})")
    return found


def _parse_number(args: argparse.Namespace, environ: Mapping[str, str], flag: str, default: float) -> float:
    if (found := _lookup(args, environ, flag)) is None:
        return default
    text, source = found
    try:
        return float(text)
    except ValueError:
        raise ConfigError(f"{source}: {text!r} is not a number") from None


def _parse_int(args: argparse.Namespace, environ: Mapping[str, str], flag: str, default: int) -> int:
    if (found := _lookup(args, environ, flag)) is None:
        return default
    text, source = found
    try:
        return int(text)
    except ValueError:
        raise ConfigError(f"{source}: {text!r} is not a whole number") from None


def _dial_via(args: argparse.Namespace, environ: Mapping[str, str]) -> tuple[tuple[str, tuple[str, int]], ...]:
    if (found := _lookup(args, environ, "--raft-dial-via")) is None:
        return ()
    try:
        return cfg.parse_dial_via(found[0])
    except ConfigError as e:
        raise ConfigError(f"{found[1]}: {e}") from None


def _parse_switch(args: argparse.Namespace, environ: Mapping[str, str], flag: str, *, default: bool) -> bool:
    if (found := _lookup(args, environ, flag)) is None:
        return default
    text, source = found
    if text.lower() in ("on", "true", "yes", "1"):
        return True
    if text.lower() in ("off", "false", "no", "0"):
        return False
    raise ConfigError(f"{source}: {text!r} is not on or off")


def _cluster_secret(args: argparse.Namespace, environ: Mapping[str, str]) -> str:
    """The secret from --cluster-secret or --cluster-secret-file, else from their variables."""
    secret_src, file_src = "--cluster-secret", "--cluster-secret-file"
    secret, file = args.cluster_secret, args.cluster_secret_file
    if not secret and not file:
        secret_src, file_src = env_var(secret_src), env_var(file_src)
        secret, file = environ.get(secret_src), environ.get(file_src)
    if secret and file:
        raise ConfigError(f"give {secret_src} or {file_src}, not both")
    if secret:
        return str(secret)
    if file:
        return cfg.read_secret_file(Path(file))
    raise ConfigError(
        f"missing --cluster-secret-file or --cluster-secret (or {env_var(file_src)} or {env_var(secret_src)})"
    )


def resolve_node_config(args: argparse.Namespace, environ: Mapping[str, str]) -> NodeConfig:
    """Build the ``NodeConfig`` from parsed ``node`` flags and an environment."""
    node_id = _required(args, environ, "--node-id")[0]
    peers_text, source = _required(args, environ, "--peers")
    try:
        peers = cfg.parse_peers(peers_text)
    except ConfigError as e:
        raise ConfigError(f"{source}: {e}") from None
    raft_bind = ""
    if found := _lookup(args, environ, "--raft-bind"):
        cfg.split_host_port(*found)
        raft_bind = found[0]
    http_host, http_port = "", 0
    if found := _lookup(args, environ, "--http-bind"):
        http_host, http_port = cfg.split_host_port(*found, allow_ipv6=True)
    found = _lookup(args, environ, "--log-level")
    return NodeConfig(
        node_id=node_id,
        peers=peers,
        data_dir=Path(_required(args, environ, "--data-dir")[0]),
        cluster_secret=_cluster_secret(args, environ),
        raft_bind=raft_bind,
        http_bind_host=http_host,
        http_bind_port=http_port,
        log_level=found[0].lower() if found else cfg.DEFAULT_LOG_LEVEL,
        request_timeout_s=_parse_number(args, environ, "--request-timeout-s", cfg.DEFAULT_REQUEST_TIMEOUT_S),
        max_request_bytes=_parse_int(args, environ, "--max-request-bytes", cfg.DEFAULT_MAX_REQUEST_BYTES),
        election_timeout_min_s=_parse_number(
            args, environ, "--election-timeout-min-s", cfg.DEFAULT_ELECTION_TIMEOUT_MIN_S
        ),
        election_timeout_max_s=_parse_number(
            args, environ, "--election-timeout-max-s", cfg.DEFAULT_ELECTION_TIMEOUT_MAX_S
        ),
        snapshot_every_entries=_parse_int(
            args, environ, "--snapshot-every-entries", cfg.DEFAULT_SNAPSHOT_EVERY_ENTRIES
        ),
        snapshot_journal_mb=_parse_int(args, environ, "--snapshot-journal-mb", cfg.DEFAULT_SNAPSHOT_JOURNAL_MB),
        snapshot_min_interval_s=_parse_number(
            args, environ, "--snapshot-min-interval-s", cfg.DEFAULT_SNAPSHOT_MIN_INTERVAL_S
        ),
        transaction_retention_s=_parse_number(
            args, environ, "--transaction-retention-s", cfg.DEFAULT_TRANSACTION_RETENTION_S
        ),
        fsync=_parse_switch(args, environ, "--fsync", default=True),
        raft_dial_via=_dial_via(args, environ),
    )


def _run(args: argparse.Namespace) -> int:
    if args.command == "node":
        config = resolve_node_config(args, os.environ)
        from raft_queue.node.server import run  # Raft and RocksDB load only when a node really starts

        return run(config)
    from raft_queue.tools.dev_cluster import DevClusterSpec, run_dev_cluster

    spec = DevClusterSpec(
        data_dir=args.data_dir,
        nodes=args.nodes,
        host=args.host,
        http_base_port=args.http_base_port,
        raft_base_port=args.raft_base_port,
        log_level=args.log_level.lower(),
        ready_timeout_s=args.ready_timeout_s,
    )
    return run_dev_cluster(spec)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``raft-queue`` script; returns the exit status."""
    try:
        try:
            args, extra = build_parser().parse_known_args(argv)
        except SystemExit as e:  # --help
            return e.code if isinstance(e.code, int) else 0
        if extra:
            raise ConfigError(f"unrecognized arguments: {' '.join(extra)} (see '{PROG} {args.command} --help')")
        return _run(args)
    except ConfigError as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 2
