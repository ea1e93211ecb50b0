"""Test support: ``run`` for async test bodies (no pytest-asyncio here), a client with tiny backoff, and
answer bodies shaped as docs/http-api.md says."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

import aiohttp

from raft_queue_client import AsyncClient, RetryEvent

T = TypeVar("T")

#: No test should come near this; it turns a hang into a failure instead of a stuck run.
TEST_DEADLINE_S = 20.0


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Runs one async test body in a fresh event loop."""
    return asyncio.run(asyncio.wait_for(coro, TEST_DEADLINE_S))


def fast_client(
    *urls: str,
    events: list[RetryEvent] | None = None,
    max_attempts: int = 4,
    timeout_s: float = 5.0,
    session: aiohttp.ClientSession | None = None,
) -> AsyncClient:
    """A client whose backoff is a few milliseconds; ``events`` collects its retries."""
    return AsyncClient(
        urls,
        timeout_s=timeout_s,
        max_attempts=max_attempts,
        backoff_initial_s=0.001,
        backoff_max_s=0.005,
        session=session,
        on_retry=None if events is None else events.append,
    )


def queue_info(name: str = "orders", **config: object) -> dict[str, object]:
    return {
        "name": name,
        "config": {
            "visibility_timeout_s": 30,
            "max_deliveries": 0,
            "dead_letter_queue": None,
            "max_length": 0,
            "dedup_window_s": 86400,
            "max_message_bytes": 1048576,
            **config,
        },
        "counts": {
            "ready": 1,
            "leased": 2,
            "delayed": 3,
            "dead_lettered": 4,
            "enqueued_total": 10,
            "acked_total": 0,
        },
        "created_at": "2024-05-01T12:00:00.123Z",
        "created_at_ms": 1714564800123,
    }


def created(name: str = "orders", *, was_created: bool = True, commit_index: int = 7) -> dict[str, object]:
    return {"queue": queue_info(name), "created": was_created, "commit_index": commit_index}


def enqueued(
    message_id: str = "m-1", seq: int = 1, *, duplicate: bool = False, commit_index: int = 9
) -> dict[str, object]:
    return {"message_id": message_id, "seq": seq, "duplicate": duplicate, "commit_index": commit_index}


def delivery(seq: int = 1, receipt: str = "r-1") -> dict[str, object]:
    return {
        "message_id": f"m-{seq}",
        "seq": seq,
        "body": f"body {seq}",
        "attributes": {"k": "v"},
        "receipt": receipt,
        "delivery_count": 1,
        "enqueued_at": "2024-05-01T12:00:00.000Z",
        "enqueued_at_ms": 1714564800000,
        "lease_expires_at": "2024-05-01T12:00:30.000Z",
        "lease_expires_at_ms": 1714564830000,
    }


def settled(*pairs: tuple[str, str], commit_index: int = 11) -> dict[str, object]:
    return {"results": [{"receipt": r, "outcome": o} for r, o in pairs], "commit_index": commit_index}


def cluster_status(leader_url: str | None) -> dict[str, object]:
    return {
        "node_id": "n1",
        "role": "follower",
        "leader_id": "n2" if leader_url else None,
        "leader_url": leader_url,
        "term": 3,
        "commit_index": 40,
        "applied_index": 40,
        "has_quorum": True,
        "ready": True,
        "members": [{"node_id": "n1", "raft_address": "127.0.0.1:9001", "http_url": "http://n1", "connected": True}],
    }


def txn_enqueued(*message_ids: str, duplicate: bool = False) -> dict[str, object]:
    """One enqueue op's result in a committed transaction."""
    return {"op": "enqueue", "messages": [{"message_id": m, "duplicate": duplicate} for m in message_ids]}


def txn_settled(op: str, *outcomes: str) -> dict[str, object]:
    """One ack/nack/extend op's result in a committed transaction."""
    return {"op": op, "outcomes": list(outcomes)}


def txn_committed(
    *results: dict[str, object], transaction_id: str = "t-1", decided_index: int = 21, duplicate: bool = False
) -> dict[str, object]:
    return {
        "transaction_id": transaction_id,
        "status": "committed",
        "decided_index": decided_index,
        "duplicate": duplicate,
        "results": list(results),
    }


def txn_pending(transaction_id: str = "t-1", *, staged_ops: int = 0, duplicate: bool = False) -> dict[str, object]:
    return {
        "transaction_id": transaction_id,
        "status": "pending",
        "expires_at": "2024-05-01T12:00:30.000Z",
        "expires_at_ms": 1714564830000,
        "staged_ops": staged_ops,
        "duplicate": duplicate,
    }
