"""The HTTP layer of raft-queue: aiohttp routes over a ``Backend`` (docs/http-api.md, api/DESIGN.md)."""

from api.app import create_app
from api.backend import Backend
from api.context import CONTEXT, ApiContext
from api.ids import MessageIdGenerator
from api.problems import Problem, ProblemCode

__all__ = [
    "CONTEXT",
    "ApiContext",
    "Backend",
    "MessageIdGenerator",
    "Problem",
    "ProblemCode",
    "create_app",
]
