"""Results -> JSON: explicit dicts encoded with msgspec, so the wire shape is visible here and only here."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime

import msgspec
from aiohttp import web

from api.backend import ClusterStatus
from state_machine.config import QueueConfig
from state_machine.results import Delivery, EnqueuedMessage, QueueInfo, SettleOutcome

JSON_CONTENT_TYPE = "application/json"

_encoder = msgspec.json.Encoder()


def json_response(data: object, status: int = 200, headers: Mapping[str, str] | None = None) -> web.Response:
    return web.Response(status=status, body=_encoder.encode(data), content_type=JSON_CONTENT_TYPE, headers=headers)


def rfc3339(ms: int) -> str:
    """Unix milliseconds -> ``2024-05-01T12:00:00.123Z``."""
    seconds, millis = divmod(ms, 1000)
    return datetime.fromtimestamp(seconds, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S") + f".{millis:03d}Z"


def seconds(ms: int) -> int | float:
    """Milliseconds -> seconds, as an integer when whole (``30`` rather than ``30.0``)."""
    whole, rest = divmod(ms, 1000)
    return whole if rest == 0 else ms / 1000


def queue_config(config: QueueConfig) -> dict[str, object]:
    return {
        "visibility_timeout_s": seconds(config.visibility_timeout_ms),
        "max_deliveries": config.max_deliveries,
        "dead_letter_queue": config.dead_letter_queue,
        "max_length": config.max_length,
        "dedup_window_s": seconds(config.dedup_window_ms),
        "max_message_bytes": config.max_message_bytes,
    }


def queue_info(info: QueueInfo) -> dict[str, object]:
    counts = info.counts
    return {
        "name": info.name,
        "config": queue_config(info.config),
        "counts": {
            "ready": counts.ready,
            "leased": counts.leased,
            "delayed": counts.delayed,
            "dead_lettered": counts.dead_lettered,
            "enqueued_total": counts.enqueued_total,
            "acked_total": counts.acked_total,
        },
        "created_at": rfc3339(info.created_at_ms),
        "created_at_ms": info.created_at_ms,
    }


def enqueued_message(message: EnqueuedMessage) -> dict[str, object]:
    return {"message_id": message.message_id, "seq": message.seq, "duplicate": message.duplicate}


def delivery(d: Delivery) -> dict[str, object]:
    return {
        "message_id": d.message_id,
        "seq": d.seq,
        # The API only ever accepts JSON strings, so bodies are UTF-8; "replace" keeps one damaged message
        # from making a whole queue unreadable.
        "body": d.body.decode("utf-8", errors="replace"),
        "attributes": d.attributes,
        "receipt": d.receipt,
        "delivery_count": d.delivery_count,
        "enqueued_at": rfc3339(d.enqueued_at_ms),
        "enqueued_at_ms": d.enqueued_at_ms,
        "lease_expires_at": rfc3339(d.lease_expires_at_ms),
        "lease_expires_at_ms": d.lease_expires_at_ms,
    }


def settle_results(receipts: list[str], outcomes: list[SettleOutcome]) -> list[dict[str, object]]:
    if len(receipts) != len(outcomes):
        raise RuntimeError(f"{len(receipts)} receipts settled but {len(outcomes)} outcomes came back")
    return [{"receipt": r, "outcome": str(o)} for r, o in zip(receipts, outcomes, strict=True)]


def cluster_status(status: ClusterStatus) -> dict[str, object]:
    return {
        "node_id": status.node_id,
        "role": status.role,
        "leader_id": status.leader_id,
        "leader_url": status.leader_url,
        "term": status.term,
        "commit_index": status.commit_index,
        "applied_index": status.applied_index,
        "has_quorum": status.has_quorum,
        "ready": status.ready,
        "members": [
            {
                "node_id": m.node_id,
                "raft_address": m.raft_address,
                "http_url": m.http_url,
                "connected": m.connected,
            }
            for m in status.members
        ],
    }
