"""``/v1/queues/{queue}/...``: enqueue, receive (with long polling), ack, nack, extend."""

from __future__ import annotations

import asyncio
import time

from aiohttp import web

from api import parse, render
from api.context import context, expect
from api.validation import read_object
from state_machine.commands import Ack, Extend, Nack
from state_machine.results import Enqueued, Received, Settled

#: Shortest wait before re-polling for a message that is about to become visible (clock skew, rounding).
MIN_POLL_S = 0.01


async def enqueue(request: web.Request) -> web.Response:
    ctx = context(request)
    queue = parse.queue_name(request.match_info["queue"])
    parsed = parse.enqueue(await read_object(request), request.headers.get(parse.IDEMPOTENCY_HEADER))
    result, commit_index = await ctx.execute(parsed.to_command(queue, ctx.new_message_id))
    messages = expect(result, Enqueued).messages
    if len(messages) != len(parsed.messages):
        raise RuntimeError(f"enqueued {len(parsed.messages)} messages but {len(messages)} results came back")
    status = 200 if all(m.duplicate for m in messages) else 201
    if parsed.batch:
        body = {"messages": [render.enqueued_message(m) for m in messages], "commit_index": commit_index}
    else:
        body = {**render.enqueued_message(messages[0]), "commit_index": commit_index}
    return render.json_response(body, status=status)


async def receive(request: web.Request) -> web.Response:
    ctx = context(request)
    queue = parse.queue_name(request.match_info["queue"])
    parsed = parse.receive(queue, await read_object(request, optional=True))
    loop = asyncio.get_running_loop()
    deadline = loop.time() + parsed.wait_s
    while True:
        result, commit_index = await ctx.execute(parsed.command)
        received = expect(result, Received)
        remaining = deadline - loop.time()
        if received.messages or remaining <= 0:
            base64 = parsed.body_encoding == "base64"
            messages = [render.delivery(d, base64=base64) for d in received.messages]
            return render.json_response({"messages": messages, "commit_index": commit_index})
        timeout = remaining
        if received.next_visible_at_ms is not None:
            until_visible = received.next_visible_at_ms / 1000 - time.time()
            timeout = min(remaining, max(MIN_POLL_S, until_visible))
        await ctx.backend.wait_for_activity(queue, timeout=timeout)


async def _settle(request: web.Request, op: Ack | Nack | Extend) -> web.Response:
    result, commit_index = await context(request).execute(op)
    outcomes = expect(result, Settled).outcomes
    return render.json_response({"results": render.settle_results(op.receipts, outcomes), "commit_index": commit_index})


async def ack(request: web.Request) -> web.Response:
    queue = parse.queue_name(request.match_info["queue"])
    return await _settle(request, parse.ack(queue, await read_object(request)))


async def nack(request: web.Request) -> web.Response:
    queue = parse.queue_name(request.match_info["queue"])
    return await _settle(request, parse.nack(queue, await read_object(request)))


async def extend(request: web.Request) -> web.Response:
    queue = parse.queue_name(request.match_info["queue"])
    return await _settle(request, parse.extend(queue, await read_object(request)))
