"""``/v1/cluster``, ``/healthz`` (the process serves HTTP), ``/readyz`` (this node has current data)."""

from __future__ import annotations

from aiohttp import web

from api import render
from api.context import context
from api.problems import Problem, ProblemCode


async def cluster(request: web.Request) -> web.Response:
    return render.json_response(render.cluster_status(context(request).backend.cluster_status()))


async def digest(request: web.Request) -> web.Response:
    """This node's applied index and a SHA-256 of its whole state: replicas at the same index must agree."""
    backend = context(request).backend
    d = backend.state_digest()
    return render.json_response(
        {"node_id": backend.node_id, "applied_index": d.applied_index, "digest": d.digest, "keys": d.keys}
    )


async def healthz(request: web.Request) -> web.Response:
    return render.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    status = context(request).backend.cluster_status()
    if not status.ready:
        reason = "no leader is known" if status.leader_id is None else "still catching up with the leader"
        raise Problem(
            503,
            ProblemCode.NOT_READY,
            f"{reason} (applied {status.applied_index}, committed {status.commit_index})",
            retry="safe",
            retry_after_s=1.0,
        )
    return render.json_response(
        {
            "status": "ready",
            "node_id": status.node_id,
            "leader_id": status.leader_id,
            "applied_index": status.applied_index,
            "commit_index": status.commit_index,
        }
    )
