"""The HTTP layer of raft-queue: aiohttp routes over a ``Backend`` (docs/http-api.md, api/DESIGN.md)."""

from api.app import create_app
from api.backend import (
    Applied,
    Backend,
    ClusterStatus,
    Member,
    NoLeader,
    NotLeader,
    OutcomeUnknown,
    Overloaded,
    ReplicationError,
)
from api.context import CONTEXT, ApiContext
from api.ids import MessageIdGenerator
from api.problems import Problem, ProblemCode

__all__ = [
    "CONTEXT",
    "ApiContext",
    "Applied",
    "Backend",
    "ClusterStatus",
    "Member",
    "MessageIdGenerator",
    "NoLeader",
    "NotLeader",
    "OutcomeUnknown",
    "Overloaded",
    "Problem",
    "ProblemCode",
    "ReplicationError",
    "create_app",
]
