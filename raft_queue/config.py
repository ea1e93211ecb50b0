"""A node's configuration: who it is, who its peers are, where it listens and keeps its data.

``NodeConfig`` validates itself on construction and raises ``ConfigError`` with a one-line message; the CLI
turns that into ``raft-queue: error: <message>``. Values a user typed are quoted with ``repr`` so that a stray
newline in an environment variable can never break the message over two lines.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

ENV_PREFIX = "RAFT_QUEUE_"  # every `raft-queue node` flag --x-y is also the variable RAFT_QUEUE_X_Y
NODE_ID_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
_HOST_RE = re.compile(r"^[A-Za-z0-9_.-]+$")

CLUSTER_SIZES = (1, 3, 5, 7)
LOG_LEVELS = ("debug", "info", "warning", "error")
MIN_SECRET_LEN = 16
MIN_ELECTION_TIMEOUT_S = 0.1

DEFAULT_LOG_LEVEL = "info"
DEFAULT_REQUEST_TIMEOUT_S = 10.0
DEFAULT_MAX_REQUEST_BYTES = 16 * 1024 * 1024
DEFAULT_ELECTION_TIMEOUT_MIN_S = 0.4
DEFAULT_ELECTION_TIMEOUT_MAX_S = 1.2
DEFAULT_SNAPSHOT_EVERY_ENTRIES = 20_000
DEFAULT_SNAPSHOT_MIN_INTERVAL_S = 600.0
#: Also snapshot once the Raft journal holds this many MiB: entries are group-committed, so 20,000 of them can
#: hold millions of messages, and the journal's entries are kept in memory.
DEFAULT_SNAPSHOT_JOURNAL_MB = 64
#: How long decided transaction records are kept: a retry within it returns the original outcome.
DEFAULT_TRANSACTION_RETENTION_S = 7 * 24 * 3600.0
MAX_TRANSACTION_RETENTION_S = 365 * 24 * 3600.0


class ConfigError(ValueError):
    """The configuration is invalid; ``str(error)`` is a single line naming the problem."""


def _parse_port(text: str, what: str) -> int:
    if not text.isascii() or not text.isdigit() or not 1 <= int(text) <= 65535:
        raise ConfigError(f"{what}: port {text!r} is not a number from 1 to 65535")
    return int(text)


def split_host_port(text: str, what: str, *, allow_ipv6: bool = False) -> tuple[str, int]:
    """Split ``host:port`` (or ``[v6]:port`` when ``allow_ipv6``) and check both parts."""
    if allow_ipv6 and text.startswith("["):
        host, sep, port = text[1:].partition("]:")
        if not sep or not host or not re.fullmatch(r"[0-9A-Fa-f:.]+", host):
            raise ConfigError(f"{what}: {text!r} is not HOST:PORT")
        return host, _parse_port(port, what)
    host, sep, port = text.rpartition(":")
    if not sep or not _HOST_RE.fullmatch(host):
        raise ConfigError(f"{what}: {text!r} is not HOST:PORT")
    return host, _parse_port(port, what)


def _check_http_url(url: str, what: str) -> str:
    """Check an advertised HTTP base URL and return it without a trailing slash."""
    if not url.isprintable() or " " in url:  # urlsplit would silently drop tabs and newlines
        raise ConfigError(f"{what}: {url!r} contains whitespace")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise ConfigError(f"{what}: {url!r} is not a valid URL") from None
    if parts.scheme != "http" or not parts.hostname or port is None:
        raise ConfigError(f"{what}: {url!r} must be http://HOST:PORT")
    if parts.path not in ("", "/") or parts.query or parts.fragment or parts.username is not None:
        raise ConfigError(f"{what}: {url!r} must be a bare http://HOST:PORT with no path, query or user")
    if not 1 <= port <= 65535:
        raise ConfigError(f"{what}: port {port} is not a number from 1 to 65535")
    return url.rstrip("/")


@dataclass(frozen=True)
class Peer:
    """One cluster member as every node knows it: its id, Raft address and advertised HTTP URL."""

    node_id: str
    raft_address: str
    http_url: str

    def __post_init__(self) -> None:
        if not NODE_ID_RE.fullmatch(self.node_id):
            raise ConfigError(
                f"node id {self.node_id!r} must be 1-63 lowercase letters, digits or '-', "
                "starting with a letter or digit"
            )
        split_host_port(self.raft_address, f"raft address of {self.node_id}")
        object.__setattr__(self, "http_url", _check_http_url(self.http_url, f"http url of {self.node_id}"))


def parse_peers(text: str) -> tuple[Peer, ...]:
    """Parse ``ID=RAFT_HOST:PORT=HTTP_URL[,ID=...]``, checking each entry and uniqueness (not the size:
    ``NodeConfig`` does that)."""
    entries = [entry.strip() for entry in text.split(",")]
    if not any(entries):
        raise ConfigError("the peer list is empty (want ID=RAFT_HOST:PORT=HTTP_URL[,...])")
    peers = []
    for entry in entries:
        parts = entry.split("=", 2)
        if len(parts) != 3 or not all(parts):
            raise ConfigError(f"peer entry {entry!r} is not ID=RAFT_HOST:PORT=HTTP_URL")
        peers.append(Peer(parts[0], parts[1], parts[2]))
    _check_unique(tuple(peers))
    return tuple(peers)


def _check_unique(peers: tuple[Peer, ...]) -> None:
    for attr, label in (("node_id", "node id"), ("raft_address", "raft address"), ("http_url", "http url")):
        seen: set[str] = set()
        for peer in peers:
            value: str = getattr(peer, attr)
            if value in seen:
                raise ConfigError(f"duplicate {label} {value!r} in peers")
            seen.add(value)


def check_peers(peers: tuple[Peer, ...]) -> None:
    """Check that ids, Raft addresses and HTTP URLs are unique and that the cluster size is usable."""
    _check_unique(peers)
    size = len(peers)
    if size == 0:
        raise ConfigError("the peer list is empty")
    if size % 2 == 0:
        raise ConfigError(
            f"a cluster of {size} nodes: an even number of nodes tolerates no more failures than one fewer; "
            f"use {size - 1} or {size + 1}"
        )
    if size not in CLUSTER_SIZES:
        raise ConfigError(f"a cluster of {size} nodes: a cluster has 1, 3, 5 or 7 members")


def parse_dial_via(text: str) -> tuple[tuple[str, tuple[str, int]], ...]:
    """``ID=HOST:PORT[,...]`` -> ((id, (host, port)), ...)."""
    out = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        node_id, sep, address = item.partition("=")
        if not sep:
            raise ConfigError(f"raft dial via: {item!r} is not ID=HOST:PORT")
        out.append((node_id, split_host_port(address, f"raft dial via {node_id}")))
    return tuple(out)


def read_secret_file(path: Path) -> str:
    """Read a cluster secret from a file, dropping the trailing newline an editor or ``echo`` adds."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        reason = e.strerror if isinstance(e, OSError) and e.strerror else type(e).__name__
        raise ConfigError(f"cannot read cluster secret file {str(path)!r}: {reason}") from None
    return text.rstrip("\r\n")


@dataclass(frozen=True)
class NodeConfig:
    """Everything a node needs to start. Empty ``raft_bind``/``http_bind_host`` and a zero
    ``http_bind_port`` mean: take them from this node's own entry in ``peers``."""

    node_id: str
    peers: tuple[Peer, ...]
    data_dir: Path
    cluster_secret: str = field(repr=False)
    raft_bind: str = ""
    http_bind_host: str = ""
    http_bind_port: int = 0
    log_level: str = DEFAULT_LOG_LEVEL
    request_timeout_s: float = DEFAULT_REQUEST_TIMEOUT_S
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES
    election_timeout_min_s: float = DEFAULT_ELECTION_TIMEOUT_MIN_S
    election_timeout_max_s: float = DEFAULT_ELECTION_TIMEOUT_MAX_S
    snapshot_every_entries: int = DEFAULT_SNAPSHOT_EVERY_ENTRIES
    snapshot_min_interval_s: float = DEFAULT_SNAPSHOT_MIN_INTERVAL_S
    snapshot_journal_mb: int = DEFAULT_SNAPSHOT_JOURNAL_MB
    transaction_retention_s: float = DEFAULT_TRANSACTION_RETENTION_S
    #: UNSAFE when False: the journal is never fsynced (only for the power-loss control experiment).
    fsync: bool = True
    #: (peer node id, (host, port)): dial that peer's Raft port through this address (a fault-injection proxy).
    raft_dial_via: tuple[tuple[str, tuple[str, int]], ...] = ()

    def __post_init__(self) -> None:
        check_peers(self.peers)
        ids = [peer.node_id for peer in self.peers]
        if self.node_id not in ids:
            raise ConfigError(f"node id {self.node_id!r} is not among the peers ({', '.join(ids)})")
        self._fill_binds()
        if len(self.cluster_secret) < MIN_SECRET_LEN:
            raise ConfigError(f"cluster secret: {len(self.cluster_secret)} characters, need at least {MIN_SECRET_LEN}")
        if self.log_level not in LOG_LEVELS:
            raise ConfigError(f"log level {self.log_level!r} is not one of {', '.join(LOG_LEVELS)}")
        if not (math.isfinite(self.request_timeout_s) and self.request_timeout_s > 0):
            raise ConfigError(f"request timeout: {self.request_timeout_s} s must be a positive number")
        if self.max_request_bytes < 1:
            raise ConfigError(f"max request bytes: {self.max_request_bytes} must be positive")
        self._check_raft(ids)
        self._check_retention()

    def _fill_binds(self) -> None:
        """Takes the empty bind addresses from this node's own entry in ``peers``, and checks them."""
        own = self.self_peer
        if not self.raft_bind:
            object.__setattr__(self, "raft_bind", own.raft_address)
        split_host_port(self.raft_bind, "raft bind")
        own_http = urlsplit(own.http_url)
        if not self.http_bind_host:
            object.__setattr__(self, "http_bind_host", own_http.hostname)
        if not self.http_bind_port:
            object.__setattr__(self, "http_bind_port", own_http.port)
        if not 1 <= self.http_bind_port <= 65535:
            raise ConfigError(f"http bind: port {self.http_bind_port} is not a number from 1 to 65535")

    def _check_raft(self, ids: list[str]) -> None:
        """The election timeouts, the dial-via peers and the snapshot settings."""
        lo, hi = self.election_timeout_min_s, self.election_timeout_max_s
        if not (math.isfinite(lo) and math.isfinite(hi)):
            raise ConfigError("election timeouts must be finite numbers")
        if lo <= MIN_ELECTION_TIMEOUT_S:
            raise ConfigError(f"election timeout min: {lo} s must be more than {MIN_ELECTION_TIMEOUT_S} s")
        if lo >= hi:
            raise ConfigError(f"election timeout min ({lo} s) must be less than max ({hi} s)")
        for peer_id, _ in self.raft_dial_via:
            if peer_id not in ids or peer_id == self.node_id:
                raise ConfigError(f"raft dial via: {peer_id!r} is not one of the other peers")
        if self.snapshot_every_entries < 10:
            raise ConfigError(f"snapshot every entries: {self.snapshot_every_entries} must be at least 10")
        if not 1 <= self.snapshot_journal_mb <= 1024 * 1024:
            raise ConfigError(f"snapshot journal MiB: {self.snapshot_journal_mb} must be 1 to 1048576")
        if not (math.isfinite(self.snapshot_min_interval_s) and self.snapshot_min_interval_s >= 1):
            raise ConfigError(f"snapshot min interval: {self.snapshot_min_interval_s} s must be at least 1 s")

    def _check_retention(self) -> None:
        retention = self.transaction_retention_s
        if not (math.isfinite(retention) and 60 <= retention <= MAX_TRANSACTION_RETENTION_S):
            raise ConfigError(
                f"transaction retention: {retention} s must be from 60 s to {MAX_TRANSACTION_RETENTION_S:g} s"
            )

    @property
    def self_peer(self) -> Peer:
        """This node's own entry in ``peers``."""
        return next(peer for peer in self.peers if peer.node_id == self.node_id)

    @property
    def other_peers(self) -> tuple[Peer, ...]:
        """Every member but this node, in ``peers`` order."""
        return tuple(peer for peer in self.peers if peer.node_id != self.node_id)
