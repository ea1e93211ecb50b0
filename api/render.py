"""Results -> JSON: explicit dicts encoded with msgspec, so the wire shape is visible here and only here."""

from __future__ import annotations

import binascii
import functools
from collections.abc import Mapping
from datetime import UTC, datetime

import msgspec
from aiohttp import web

from api.backend import ClusterStatus
from api.problems import REJECTED
from state_machine.commands import Ack, Enqueue, Extend, Nack, TxnOp
from state_machine.config import QueueConfig
from state_machine.results import (
    Delivery,
    Enqueued,
    EnqueuedMessage,
    ErrorCode,
    QueueInfo,
    Result,
    Settled,
    SettleOutcome,
    TxnFailure,
    TxnOutcome,
    TxnStatus,
)

JSON_CONTENT_TYPE = "application/json"

_encoder = msgspec.json.Encoder()


def json_response(data: object, status: int = 200, headers: Mapping[str, str] | None = None) -> web.Response:
    return web.Response(status=status, body=_encoder.encode(data), content_type=JSON_CONTENT_TYPE, headers=headers)


@functools.lru_cache(maxsize=4096)
def _rfc3339_second(seconds: int) -> str:
    return datetime.fromtimestamp(seconds, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S")


def rfc3339(ms: int) -> str:
    """Unix milliseconds -> ``2024-05-01T12:00:00.123Z``. The second is formatted once (strftime was a twelfth of
    the leader's time while a backlog drained: every delivery carries two time stamps)."""
    seconds, millis = divmod(ms, 1000)
    return f"{_rfc3339_second(seconds)}.{millis:03d}Z"


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


def delivery(d: Delivery, *, base64: bool = False) -> dict[str, object]:
    """One leased message; ``base64``: the exact bytes as ``body_base64`` in the place of ``body``."""
    if base64:
        body_key, body = "body_base64", binascii.b2a_base64(d.body, newline=False).decode("ascii")
    else:
        # "replace": a body that is not UTF-8 (sent as body_base64) must not make a whole queue unreadable as text.
        body_key, body = "body", d.body.decode("utf-8", errors="replace")
    return {
        "message_id": d.message_id,
        "seq": d.seq,
        body_key: body,
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


# --- transactions -------------------------------------------------------------------------------------------

#: The op a settle result came from, when only the result is at hand (commit, GET): every outcome a committed
#: transaction can hold names its op. Anything else (never expected) is rendered as "settle".
_SETTLE_OP: Mapping[SettleOutcome, str] = {
    SettleOutcome.ACKED: "ack",
    SettleOutcome.ALREADY_ACKED: "ack",
    SettleOutcome.NACKED: "nack",
    SettleOutcome.DEAD_LETTERED: "nack",
    SettleOutcome.EXTENDED: "extend",
}


def _op_name(op: TxnOp) -> str:
    match op:
        case Enqueue():
            return "enqueue"
        case Ack():
            return "ack"
        case Nack():
            return "nack"
        case Extend():
            return "extend"


def txn_result(result: Result, op: TxnOp | None) -> dict[str, object]:
    """One committed op's result; ``op`` (the request's, when the handler has it) names the op exactly."""
    if isinstance(result, Enqueued):
        return {"op": "enqueue", "messages": [enqueued_message(m) for m in result.messages]}
    if isinstance(result, Settled):
        if op is not None:
            name = _op_name(op)
        else:
            name = _SETTLE_OP.get(result.outcomes[0], "settle") if result.outcomes else "settle"
        return {"op": name, "outcomes": [str(o) for o in result.outcomes]}
    raise RuntimeError(f"a committed transaction holds a {type(result).__name__} result")


def txn_request_field(field: str | None) -> str | None:
    """A field the state machine names inside a transaction command (``ops``, ``ops[2].receipts[0]``) as the
    client spelled it (``operations``, ``operations[2].receipts[0]``); other fields are the same in both."""
    if field is not None and (field == "ops" or field.startswith(("ops[", "ops."))):
        return "operations" + field[3:]
    return field


def txn_field(op: int, field: str | None) -> str:
    """A failure's field as a path into the request: ``operations[2].receipts[0]``. The state machine names it
    from the command's op list (``ops[2]...``); a field relative to the op (``receipts[0]``) is put under it."""
    base = f"operations[{op}]"
    path = txn_request_field(field)
    if path is None:
        return base
    if path.startswith("operations["):
        return path
    return base + path if path.startswith("[") else f"{base}.{path}"


_ERROR_CODES = frozenset(code.value for code in ErrorCode)


def _failure_code(code: str) -> str:
    """An ``ErrorCode`` becomes the problem code the API uses for it elsewhere; settle outcomes stay as they are."""
    if code in _ERROR_CODES:
        return str(REJECTED[ErrorCode(code)][1])
    return code


def txn_failure(failure: TxnFailure) -> dict[str, object]:
    return {
        "op": failure.op,
        "code": _failure_code(failure.code),
        "detail": failure.detail,
        "field": txn_field(failure.op, failure.field),
    }


def txn_outcome(outcome: TxnOutcome, ops: list[TxnOp] | None = None) -> dict[str, object]:
    """A transaction as the API shows it. Every key is always present; ``results`` is non-empty only when
    committed, ``reason``/``failures`` only when aborted, ``expires_at`` null when nothing was recorded."""
    if ops is not None and len(ops) != len(outcome.results) and outcome.status is TxnStatus.COMMITTED:
        raise RuntimeError(f"{len(ops)} ops committed but {len(outcome.results)} results came back")
    expires = outcome.expires_at_ms or None
    return {
        "transaction_id": outcome.transaction_id,
        "status": str(outcome.status),
        "decided_index": outcome.decided_index,
        "duplicate": outcome.duplicate,
        "staged_ops": outcome.staged_ops,
        "expires_at": None if expires is None else rfc3339(expires),
        "expires_at_ms": expires,
        "results": [txn_result(result, None if ops is None else ops[i]) for i, result in enumerate(outcome.results)],
        "reason": outcome.reason,
        "failures": [txn_failure(f) for f in outcome.failures],
    }


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
