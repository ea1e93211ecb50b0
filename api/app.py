"""``create_app``: the routes of docs/http-api.md on top of a ``Backend``."""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web

from api import handlers_cluster, handlers_messages, handlers_queues, handlers_transactions
from api.backend import Backend
from api.context import CONTEXT, ApiContext
from api.ids import MessageIdGenerator
from api.middlewares import edge_middleware

DEFAULT_MAX_REQUEST_BYTES = 16 * 1024 * 1024


def create_app(
    backend: Backend,
    *,
    request_timeout_s: float = 10.0,
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES,
    new_message_id: Callable[[], str] | None = None,
) -> web.Application:
    """The HTTP API of one node.

    ``request_timeout_s`` bounds each replicated operation and each read barrier; ``max_request_bytes`` is the
    node-wide request body limit (``413 request_too_large`` above it)."""
    app = web.Application(
        client_max_size=max_request_bytes,
        middlewares=[edge_middleware],
    )
    app[CONTEXT] = ApiContext(
        backend=backend,
        request_timeout_s=request_timeout_s,
        max_request_bytes=max_request_bytes,
        new_message_id=new_message_id or MessageIdGenerator(),
    )
    app.router.add_routes(
        [
            web.get("/healthz", handlers_cluster.healthz),
            web.get("/readyz", handlers_cluster.readyz),
            web.get("/v1/cluster", handlers_cluster.cluster),
            web.get("/v1/cluster/digest", handlers_cluster.digest),
            web.get("/v1/queues", handlers_queues.list_queues),
            web.put("/v1/queues/{queue}", handlers_queues.put_queue),
            web.get("/v1/queues/{queue}", handlers_queues.get_queue),
            web.delete("/v1/queues/{queue}", handlers_queues.delete_queue),
            web.post("/v1/queues/{queue}/messages", handlers_messages.enqueue),
            web.post("/v1/queues/{queue}/receive", handlers_messages.receive),
            web.post("/v1/queues/{queue}/ack", handlers_messages.ack),
            web.post("/v1/queues/{queue}/nack", handlers_messages.nack),
            web.post("/v1/queues/{queue}/extend", handlers_messages.extend),
            web.post("/v1/transactions", handlers_transactions.transact),
            web.put("/v1/transactions/{transaction_id}", handlers_transactions.begin),
            web.get("/v1/transactions/{transaction_id}", handlers_transactions.get_transaction),
            web.post("/v1/transactions/{transaction_id}/operations", handlers_transactions.stage),
            web.post("/v1/transactions/{transaction_id}/commit", handlers_transactions.commit),
            web.post("/v1/transactions/{transaction_id}/abort", handlers_transactions.abort),
        ]
    )
    return app
