"""The vocabulary the node and the HTTP layer share: an operation's outcome, the replication failures, the
cluster's status.

It lives in ``state_machine`` because that is the neutral core both sides already import (as rqlite's
``command`` package is): it imports nothing but msgspec and the state machine's own results, ``api`` may not
import ``raft_queue``, and the node should not import ``api`` (only the process that builds the HTTP app does).
``api.backend.Backend`` is the interface the HTTP layer declares in these terms; ``raft_queue.node.Node``
implements it.

    ReplicationError
     ├── NoLeader          no leader is known; nothing was proposed.          Retry later (safe).
     ├── NotLeader         the node that got it is not the leader; not applied. Retry (safe).
     ├── Overloaded        the proposal queue is full; not applied.            Retry later (safe).
     └── OutcomeUnknown    it may or may not commit. Retry only with the same idempotency key.
"""

from __future__ import annotations

import msgspec

from state_machine.results import Result


class ReplicationError(Exception):
    """A command could not be shown to have committed."""

    retry_after_s: float = 1.0

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class NoLeader(ReplicationError):
    """No leader is known (election in progress, or no quorum). Nothing was proposed."""


class NotLeader(ReplicationError):
    """The command reached a node that is not the leader. It was not applied."""

    def __init__(self, detail: str, leader_url: str | None = None) -> None:
        super().__init__(detail)
        self.leader_url = leader_url


class Overloaded(ReplicationError):
    """The node's proposal queue is full. Nothing was proposed."""


class OutcomeUnknown(ReplicationError):
    """The command may or may not commit (timeout, leader change mid-flight, connection loss)."""


class Applied(msgspec.Struct, frozen=True):
    """One operation's result, once the entry that carried it applied on this node."""

    result: Result
    #: The Raft index of the entry that carried the command.
    commit_index: int


class Member(msgspec.Struct, frozen=True):
    node_id: str
    raft_address: str
    http_url: str
    #: Whether this node currently has a Raft connection to that member (True for itself).
    connected: bool


class ClusterStatus(msgspec.Struct, frozen=True):
    node_id: str
    role: str  # "leader" | "follower" | "candidate"
    leader_id: str | None
    leader_url: str | None
    term: int
    commit_index: int
    applied_index: int
    has_quorum: bool
    #: Leader known and this node has applied everything the leader told it is committed.
    ready: bool
    members: list[Member]
