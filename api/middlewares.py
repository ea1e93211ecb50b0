"""``edge_middleware``, the one middleware: what every request gets on its way in and out.

- ``?redirect=true`` on ``/v1/...`` sends a follower's client to the leader (307).
- Every exception (``Problem``, aiohttp's 404/405/413, a bug) becomes problem+json. A bug is logged with its
  traceback and answered ``500 internal`` without one.
- ``X-Raft-Node`` / ``X-Raft-Leader`` / ``X-Raft-Leader-Url`` go on every response, problems and redirects too.

One middleware rather than three: each aiohttp middleware costs a coroutine frame and a wrapper call per
request, a measurable share of a small request.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import MutableMapping

from aiohttp import web
from aiohttp.typedefs import Handler

from api import parse
from api.context import context
from api.problems import Problem, ProblemCode

log = logging.getLogger(__name__)


def _set_raft_headers(request: web.Request, headers: MutableMapping[str, str]) -> None:
    backend = context(request).backend
    try:
        headers["X-Raft-Node"] = backend.node_id
        leader_id, leader_url = backend.leader()
    except Exception:
        log.exception("could not read the leader for response headers")
        return
    if leader_id is not None:
        headers["X-Raft-Leader"] = leader_id
    if leader_url is not None:
        headers["X-Raft-Leader-Url"] = leader_url


def _http_problem(exc: web.HTTPException, request: web.Request) -> Problem:
    if isinstance(exc, web.HTTPNotFound):
        return Problem(404, ProblemCode.NOT_FOUND, f"no route for {request.path}")
    if isinstance(exc, web.HTTPMethodNotAllowed):
        allowed = ", ".join(sorted(exc.allowed_methods))
        return Problem(
            405,
            ProblemCode.METHOD_NOT_ALLOWED,
            f"{request.method} is not allowed on {request.path} (allowed: {allowed})",
            headers={"Allow": allowed},
        )
    if isinstance(exc, web.HTTPRequestEntityTooLarge):
        limit = context(request).max_request_bytes
        return Problem(
            413, ProblemCode.REQUEST_TOO_LARGE, f"the request body is over this node's limit of {limit} bytes"
        )
    if exc.status < 500:
        return Problem(exc.status, ProblemCode.INVALID_REQUEST, exc.reason)
    return Problem(exc.status, ProblemCode.INTERNAL, exc.reason)


#: Routes whose answer is about the node asked: never redirected (a follower's digest is what its caller wants).
_PER_NODE = frozenset({"/v1/cluster", "/v1/cluster/digest"})


def _redirect(request: web.Request) -> web.Response | None:
    """A 307 to the leader when a follower's client asked for it (``?redirect=true``), else None."""
    if not request.path.startswith("/v1/") or not parse.wants_redirect(request.query):
        return None
    if (request.method == "GET" and request.query.get("consistency") == "local") or request.path in _PER_NODE:
        return None  # a local read, or this node's own view: answered here by definition
    status = context(request).backend.cluster_status()
    if status.role == "leader":
        return None
    if status.leader_url is None:
        raise Problem(503, ProblemCode.NO_LEADER, "no leader is known to redirect to", retry="safe", retry_after_s=1.0)
    location = status.leader_url.rstrip("/") + request.path_qs
    return web.Response(status=307, headers={"Location": location})


@web.middleware
async def edge_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        response = _redirect(request) or await handler(request)
    except Problem as problem:
        response = problem.response()
    except web.HTTPException as exc:
        if exc.status < 400:  # a redirect or similar raised by aiohttp itself: not an error
            _set_raft_headers(request, exc.headers)
            raise
        response = _http_problem(exc, request).response()
    except Exception:
        incident = secrets.token_hex(6)
        log.exception("internal error %s while serving %s %s", incident, request.method, request.path_qs)
        response = Problem(
            500, ProblemCode.INTERNAL, f"internal error (incident {incident}; see this node's log)"
        ).response()
    if not response.prepared:
        _set_raft_headers(request, response.headers)
    return response
