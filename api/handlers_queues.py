"""``/v1/queues``: create (idempotent ``PUT``), list, describe, delete."""

from __future__ import annotations

from aiohttp import web

from api import parse, render
from api.context import context, expect
from api.problems import Problem, ProblemCode
from api.validation import read_object
from state_machine.commands import CreateQueue, DeleteQueue
from state_machine.results import QueueCreated, QueueDeleted


async def put_queue(request: web.Request) -> web.Response:
    ctx = context(request)
    name = parse.queue_name(request.match_info["queue"])
    config = parse.queue_config(name, await read_object(request, optional=True))
    result, commit_index = await ctx.execute(CreateQueue(name, config))
    created = expect(result, QueueCreated).created
    info = ctx.backend.queue_info(name)
    if info is None:  # deleted again between our apply and this read
        raise Problem(
            404,
            ProblemCode.QUEUE_NOT_FOUND,
            f"queue {name!r} was {'created' if created else 'found'} at index {commit_index} "
            "but deleted again before it could be read",
        )
    body = {"queue": render.queue_info(info), "created": created, "commit_index": commit_index}
    return render.json_response(body, status=201 if created else 200)


async def list_queues(request: web.Request) -> web.Response:
    ctx = context(request)
    if not parse.local_consistency(request.query):
        await ctx.barrier()
    queues = sorted(ctx.backend.list_queues(), key=lambda info: info.name)
    return render.json_response({"queues": [render.queue_info(info) for info in queues]})


async def get_queue(request: web.Request) -> web.Response:
    ctx = context(request)
    local = parse.local_consistency(request.query)
    name = parse.queue_name(request.match_info["queue"])
    if not local:
        await ctx.barrier()
    info = ctx.backend.queue_info(name)
    if info is None:
        raise Problem(404, ProblemCode.QUEUE_NOT_FOUND, f"queue {name!r} does not exist")
    return render.json_response(render.queue_info(info))


async def delete_queue(request: web.Request) -> web.Response:
    ctx = context(request)
    name = parse.queue_name(request.match_info["queue"])
    result, commit_index = await ctx.execute(DeleteQueue(name))
    expect(result, QueueDeleted)
    return render.json_response({"deleted": True, "commit_index": commit_index})
