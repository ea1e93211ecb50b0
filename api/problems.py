"""Errors as ``application/problem+json`` (RFC 9457), and the tables that turn domain and replication failures
into them.

A handler never builds an error response itself: it raises ``Problem`` (or lets a ``Rejected`` result or a
``ReplicationError`` be translated here), and ``api.middlewares.edge_middleware`` renders it.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from enum import StrEnum
from typing import Literal

import msgspec
from aiohttp import web

from api.backend import NoLeader, NotLeader, OutcomeUnknown, Overloaded, ReplicationError
from state_machine.results import ErrorCode, Rejected

log = logging.getLogger(__name__)

PROBLEM_CONTENT_TYPE = "application/problem+json"
TYPE_PREFIX = "urn:raft-queue:problem:"

#: Whether sending the same request again is safe (see docs/http-api.md, "Errors").
Retry = Literal["never", "safe", "same_idempotency_key"]


class ProblemCode(StrEnum):
    INVALID_REQUEST = "invalid_request"
    QUEUE_NOT_FOUND = "queue_not_found"
    NOT_FOUND = "not_found"
    METHOD_NOT_ALLOWED = "method_not_allowed"
    QUEUE_EXISTS = "queue_exists"
    QUEUE_IN_USE = "queue_in_use"
    DEAD_LETTER_QUEUE_NOT_FOUND = "dead_letter_queue_not_found"
    IDEMPOTENCY_KEY_CONFLICT = "idempotency_key_conflict"
    MESSAGE_TOO_LARGE = "message_too_large"
    REQUEST_TOO_LARGE = "request_too_large"
    QUEUE_FULL = "queue_full"
    TRANSACTION_ABORTED = "transaction_aborted"
    TRANSACTION_CONFLICT = "transaction_conflict"
    TRANSACTION_NOT_FOUND = "transaction_not_found"
    TRANSACTION_NOT_PENDING = "transaction_not_pending"
    TRANSACTION_EXISTS = "transaction_exists"
    NO_LEADER = "no_leader"
    #: The node the write (or read barrier) reached is not the leader (any more); nothing was applied.
    NOT_LEADER = "not_leader"
    OVERLOADED = "overloaded"
    OUTCOME_UNKNOWN = "outcome_unknown"
    #: A read's barrier did not commit in time. A read changes nothing, so this is always safe to retry.
    TIMEOUT = "timeout"
    NOT_READY = "not_ready"
    INTERNAL = "internal"


TITLES: Mapping[ProblemCode, str] = {
    ProblemCode.INVALID_REQUEST: "Invalid request",
    ProblemCode.QUEUE_NOT_FOUND: "Queue not found",
    ProblemCode.NOT_FOUND: "Not found",
    ProblemCode.METHOD_NOT_ALLOWED: "Method not allowed",
    ProblemCode.QUEUE_EXISTS: "Queue exists with a different configuration",
    ProblemCode.QUEUE_IN_USE: "Queue in use",
    ProblemCode.DEAD_LETTER_QUEUE_NOT_FOUND: "Dead-letter queue not found",
    ProblemCode.IDEMPOTENCY_KEY_CONFLICT: "Idempotency key conflict",
    ProblemCode.MESSAGE_TOO_LARGE: "Message too large",
    ProblemCode.REQUEST_TOO_LARGE: "Request too large",
    ProblemCode.QUEUE_FULL: "Queue full",
    ProblemCode.TRANSACTION_ABORTED: "Transaction aborted",
    ProblemCode.TRANSACTION_CONFLICT: "Transaction ID reused for a different request",
    ProblemCode.TRANSACTION_NOT_FOUND: "Transaction not found",
    ProblemCode.TRANSACTION_NOT_PENDING: "Transaction already decided",
    ProblemCode.TRANSACTION_EXISTS: "Transaction exists",
    ProblemCode.NO_LEADER: "No leader",
    ProblemCode.NOT_LEADER: "Not the leader",
    ProblemCode.OVERLOADED: "Overloaded",
    ProblemCode.OUTCOME_UNKNOWN: "Outcome unknown",
    ProblemCode.TIMEOUT: "Timeout",
    ProblemCode.NOT_READY: "Not ready",
    ProblemCode.INTERNAL: "Internal error",
}

_encoder = msgspec.json.Encoder()


class Problem(Exception):
    """An error answer. Raise it anywhere below a handler; the problem middleware renders it."""

    def __init__(
        self,
        status: int,
        code: ProblemCode,
        detail: str,
        *,
        retry: Retry = "never",
        field: str | None = None,
        outcome: Literal["unknown"] | None = None,
        retry_after_s: float | None = None,
        headers: Mapping[str, str] | None = None,
        extensions: Mapping[str, object] | None = None,
    ) -> None:
        super().__init__(f"{status} {code}: {detail}")
        self.status = status
        self.code = code
        self.detail = detail
        self.retry: Retry = retry
        self.field = field
        self.outcome = outcome
        self.retry_after_s = retry_after_s
        self.headers = dict(headers or {})
        #: Extension members (RFC 9457 section 3.2), e.g. a transaction's failures; never override the standard ones.
        self.extensions = dict(extensions or {})

    def to_json(self) -> dict[str, object]:
        body: dict[str, object] = {
            "type": TYPE_PREFIX + self.code,
            "title": TITLES.get(self.code, self.code),
            "status": self.status,
            "code": str(self.code),
            "detail": self.detail,
            "retry": self.retry,
        }
        if self.field is not None:
            body["field"] = self.field
        if self.outcome is not None:
            body["outcome"] = self.outcome
        for name, value in self.extensions.items():
            body.setdefault(name, value)
        return body

    def response(self) -> web.Response:
        headers = dict(self.headers)
        if self.retry_after_s is not None:
            headers["Retry-After"] = str(max(1, math.ceil(self.retry_after_s)))
        return web.Response(
            status=self.status,
            body=_encoder.encode(self.to_json()),
            content_type=PROBLEM_CONTENT_TYPE,
            headers=headers,
        )


def invalid_request(field: str | None, detail: str) -> Problem:
    """400 ``invalid_request``; the detail is prefixed with the field so it reads well on its own."""
    return Problem(400, ProblemCode.INVALID_REQUEST, f"{field}: {detail}" if field else detail, field=field)


# --- Rejected results (domain errors decided in the log) ----------------------------------------------------

#: ErrorCode -> (status, problem code, retry). ``queue_full`` also carries ``Retry-After``.
REJECTED: Mapping[ErrorCode, tuple[int, ProblemCode, Retry]] = {
    ErrorCode.QUEUE_NOT_FOUND: (404, ProblemCode.QUEUE_NOT_FOUND, "never"),
    ErrorCode.QUEUE_EXISTS: (409, ProblemCode.QUEUE_EXISTS, "never"),
    ErrorCode.QUEUE_IN_USE: (409, ProblemCode.QUEUE_IN_USE, "never"),
    ErrorCode.DEAD_LETTER_QUEUE_NOT_FOUND: (409, ProblemCode.DEAD_LETTER_QUEUE_NOT_FOUND, "never"),
    ErrorCode.IDEMPOTENCY_KEY_CONFLICT: (409, ProblemCode.IDEMPOTENCY_KEY_CONFLICT, "never"),
    ErrorCode.MESSAGE_TOO_LARGE: (413, ProblemCode.MESSAGE_TOO_LARGE, "never"),
    ErrorCode.QUEUE_FULL: (429, ProblemCode.QUEUE_FULL, "safe"),
    ErrorCode.INVALID_ARGUMENT: (400, ProblemCode.INVALID_REQUEST, "never"),
    ErrorCode.TRANSACTION_CONFLICT: (409, ProblemCode.TRANSACTION_CONFLICT, "never"),
    ErrorCode.TRANSACTION_NOT_FOUND: (404, ProblemCode.TRANSACTION_NOT_FOUND, "never"),
    ErrorCode.TRANSACTION_NOT_PENDING: (409, ProblemCode.TRANSACTION_NOT_PENDING, "never"),
    ErrorCode.TRANSACTION_EXISTS: (409, ProblemCode.TRANSACTION_EXISTS, "never"),
    # The log entry did not decode: a bug or corruption, not something the client did.
    ErrorCode.INVALID_ENTRY: (500, ProblemCode.INTERNAL, "never"),
}


def rejected_problem(rejected: Rejected) -> Problem:
    mapped = REJECTED.get(rejected.code)
    if mapped is None or mapped[0] >= 500:
        log.error("state machine rejected an operation: %s (%s)", rejected.code, rejected.detail)
        return Problem(500, ProblemCode.INTERNAL, "internal error: the operation was not applied")
    status, code, retry = mapped
    return Problem(
        status,
        code,
        rejected.detail,
        retry=retry,
        field=rejected.field,
        retry_after_s=1.0 if rejected.code is ErrorCode.QUEUE_FULL else None,
    )


# --- Replication failures -----------------------------------------------------------------------------------

#: For writes: ReplicationError subclass -> (problem code, retry). List every subclass (a test checks).
WRITE_FAILURES: Mapping[type[ReplicationError], tuple[ProblemCode, Retry]] = {
    NoLeader: (ProblemCode.NO_LEADER, "safe"),
    NotLeader: (ProblemCode.NOT_LEADER, "safe"),
    Overloaded: (ProblemCode.OVERLOADED, "safe"),
    OutcomeUnknown: (ProblemCode.OUTCOME_UNKNOWN, "same_idempotency_key"),
}

#: For reads (the barrier): nothing is ever changed, so every failure is safe to retry.
READ_FAILURES: Mapping[type[ReplicationError], tuple[ProblemCode, Retry]] = {
    NoLeader: (ProblemCode.NO_LEADER, "safe"),
    NotLeader: (ProblemCode.NOT_LEADER, "safe"),
    Overloaded: (ProblemCode.OVERLOADED, "safe"),
    OutcomeUnknown: (ProblemCode.TIMEOUT, "safe"),
}


def _lookup(
    table: Mapping[type[ReplicationError], tuple[ProblemCode, Retry]], exc: ReplicationError
) -> tuple[ProblemCode, Retry] | None:
    for cls in type(exc).__mro__:
        if issubclass(cls, ReplicationError) and cls in table:
            return table[cls]
    return None


def _replication_problem(code: ProblemCode, retry: Retry, exc: ReplicationError) -> Problem:
    detail = exc.detail
    if isinstance(exc, NotLeader) and exc.leader_url:
        detail = f"{detail} (leader: {exc.leader_url})"
    return Problem(
        503,
        code,
        detail,
        retry=retry,
        outcome="unknown" if retry == "same_idempotency_key" else None,
        retry_after_s=exc.retry_after_s,
    )


def write_failure(exc: ReplicationError) -> Problem:
    """A write that could not be shown to have committed. An unlisted kind counts as "may have committed"."""
    code, retry = _lookup(WRITE_FAILURES, exc) or (ProblemCode.OUTCOME_UNKNOWN, "same_idempotency_key")
    return _replication_problem(code, retry, exc)


def read_failure(exc: ReplicationError) -> Problem:
    """A read whose barrier failed: never an unknown outcome, since a read changes nothing."""
    code, retry = _lookup(READ_FAILURES, exc) or (ProblemCode.TIMEOUT, "safe")
    return _replication_problem(code, retry, exc)
