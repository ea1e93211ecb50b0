"""Everything the client raises: one hierarchy, rooted at ``RaftQueueError``.

No foreign exception (``aiohttp.ClientError``, ``asyncio.TimeoutError``, a JSON decode error) ever leaves the
client: the transport catches them once, at the boundary, and maps them to one of these. The original is kept
as ``__cause__`` for debugging.

    RaftQueueError                      anything the client raises
     ├── ApiError                       the server answered with a problem document:
     │                                  status, code, detail, field, retry
     │    ├── InvalidRequest            400 invalid_request
     │    ├── RouteNotFound             404 not_found
     │    ├── QueueNotFound             404 queue_not_found
     │    ├── MethodNotAllowed          405 method_not_allowed
     │    ├── QueueExists               409 queue_exists
     │    ├── QueueInUse                409 queue_in_use
     │    ├── DeadLetterQueueNotFound   409 dead_letter_queue_not_found
     │    ├── IdempotencyKeyConflict    409 idempotency_key_conflict
     │    ├── TransactionError          any problem about a transaction as a whole:
     │    │    ├── TransactionAborted   409 transaction_aborted (``reason``, ``failures``)
     │    │    ├── TransactionConflict  409 transaction_conflict: the ID was used for a different request
     │    │    ├── TransactionNotPending 409 transaction_not_pending: already committed or aborted
     │    │    ├── TransactionExists    409 transaction_exists: the ID is taken (begin)
     │    │    └── TransactionNotFound  404 transaction_not_found
     │    ├── MessageTooLarge           413 message_too_large
     │    ├── RequestTooLarge           413 request_too_large
     │    ├── QueueFull                 429 queue_full (``retry_after_s``)
     │    ├── InternalServerError       500 internal
     │    └── ServiceUnavailable        503 no_leader, not_leader, overloaded, timeout, not_ready,
     │                                  outcome_unknown (retried by the client: seen as ``last_problem``
     │                                  of the two below)
     ├── UnavailableError               retries exhausted and every failure was one where nothing was applied
     │                                  (a question about one node: its one attempt got no answer)
     ├── OutcomeUnknownError            retries exhausted and at least one attempt may have been applied
     ├── ProtocolError                  the server said something that is not the API
     └── ClientClosedError              the client was used after ``close()``

A problem ``code`` the client does not know maps to plain ``ApiError``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from raft_queue_client.models import TransactionFailure


class RaftQueueError(Exception):
    """Base class of every error the client raises."""


class ApiError(RaftQueueError):
    """The server answered with an ``application/problem+json`` error.

    ``retry`` is the server's word on resending the same request: ``"never"``, ``"safe"`` or
    ``"same_idempotency_key"`` (``None`` when the problem did not say).
    """

    def __init__(
        self,
        status: int,
        code: str,
        detail: str,
        *,
        field: str | None = None,
        retry: str | None = None,
        title: str | None = None,
        outcome: str | None = None,
        retry_after_s: float | None = None,
        node_url: str | None = None,
    ) -> None:
        message = f"{status} {code}: {detail}"
        if field is not None:
            message += f" (field: {field})"
        super().__init__(message)
        self.status = status
        self.code = code
        self.detail = detail
        self.field = field
        self.retry = retry
        self.title = title
        #: ``"unknown"`` when the server could not tell whether a write committed.
        self.outcome = outcome
        #: The ``Retry-After`` header, in seconds, when the answer had one.
        self.retry_after_s = retry_after_s
        #: The node that answered.
        self.node_url = node_url


class InvalidRequest(ApiError):
    """400 ``invalid_request``: malformed JSON, a wrong type, an out-of-range or unknown field (see
    ``field``)."""


class RouteNotFound(ApiError):
    """404 ``not_found``: no such route (a client/server version mismatch, or a bad base URL)."""


class QueueNotFound(ApiError):
    """404 ``queue_not_found``: the queue does not exist."""


class MethodNotAllowed(ApiError):
    """405 ``method_not_allowed``."""


class QueueExists(ApiError):
    """409 ``queue_exists``: a queue of that name exists with a different configuration."""


class QueueInUse(ApiError):
    """409 ``queue_in_use``: the queue is another queue's dead-letter queue, so it cannot be deleted."""


class DeadLetterQueueNotFound(ApiError):
    """409 ``dead_letter_queue_not_found``: the configured dead-letter queue does not exist."""


class IdempotencyKeyConflict(ApiError):
    """409 ``idempotency_key_conflict``: the key was already used for a different message."""


class TransactionError(ApiError):
    """A problem with a transaction as a whole (the codes ``transaction_*``)."""


class TransactionAborted(TransactionError):
    """409 ``transaction_aborted``: the transaction did not commit, and nothing of it was applied.

    ``reason`` is ``"preconditions"`` (some ops could not apply: see ``failures``, one per failing op, with its
    index), ``"timeout"`` (an interactive transaction not committed in time) or ``"aborted"``."""

    def __init__(
        self,
        status: int,
        code: str,
        detail: str,
        *,
        field: str | None = None,
        retry: str | None = None,
        title: str | None = None,
        outcome: str | None = None,
        retry_after_s: float | None = None,
        node_url: str | None = None,
        reason: str | None = None,
        failures: Sequence[TransactionFailure] = (),
        transaction_id: str | None = None,
        decided_index: int | None = None,
        duplicate: bool = False,
    ) -> None:
        super().__init__(
            status,
            code,
            detail,
            field=field,
            retry=retry,
            title=title,
            outcome=outcome,
            retry_after_s=retry_after_s,
            node_url=node_url,
        )
        #: ``"preconditions"``, ``"timeout"`` or ``"aborted"`` (``None`` if the server did not say).
        self.reason = reason
        #: One entry per op that could not apply (``reason == "preconditions"``).
        self.failures: tuple[TransactionFailure, ...] = tuple(failures)
        #: The transaction's ID, as the server named it (``None`` if it did not).
        self.transaction_id = transaction_id
        #: The Raft index of the entry that aborted it (``None`` for a timeout, or if the server did not say).
        self.decided_index = decided_index
        #: True: the answer repeats a recorded abort (an earlier attempt or call with this ID was refused).
        self.duplicate = duplicate
        if reason is not None or self.failures:
            what = [f"op {f.op}: {f.code}" for f in self.failures]
            self.args = (f"{self.args[0]} [reason: {reason}{'; ' if what else ''}{'; '.join(what)}]",)


class TransactionConflict(TransactionError):
    """409 ``transaction_conflict``: the transaction ID was already used for a different request (other ops,
    or another stage call with the same ``stage_seq``)."""


class TransactionNotPending(TransactionError):
    """409 ``transaction_not_pending``: staging into (or committing) a transaction that is already decided."""


class TransactionExists(TransactionError):
    """409 ``transaction_exists``: the ID is already taken by another transaction."""


class TransactionNotFound(TransactionError):
    """404 ``transaction_not_found``: no transaction has that ID (or its record was forgotten)."""


class MessageTooLarge(ApiError):
    """413 ``message_too_large``: a body over the queue's ``max_message_bytes``."""


class RequestTooLarge(ApiError):
    """413 ``request_too_large``: the whole request is over the node's limit."""


class QueueFull(ApiError):
    """429 ``queue_full``: the queue holds ``max_length`` messages. Not retried by the client; see
    ``retry_after_s``."""


class InternalServerError(ApiError):
    """500 ``internal``: a server bug."""


class ServiceUnavailable(ApiError):
    """503: the node could not serve the request now (no leader, overloaded, outcome unknown, ...).

    The client retries these itself; callers see one only as ``last_problem`` (and ``__cause__``) of an
    ``UnavailableError`` or ``OutcomeUnknownError``, when a 503 says ``retry: never``, or from a question about one
    node (``readiness``, ``state_digest``), which is not retried: the node's 503 is its answer.
    """


#: Problem code -> exception class (docs/http-api.md, "Errors"). Codes not listed map to ``ApiError``.
CODE_TO_ERROR: Mapping[str, type[ApiError]] = {
    "invalid_request": InvalidRequest,
    "queue_not_found": QueueNotFound,
    "not_found": RouteNotFound,
    "method_not_allowed": MethodNotAllowed,
    "queue_exists": QueueExists,
    "queue_in_use": QueueInUse,
    "dead_letter_queue_not_found": DeadLetterQueueNotFound,
    "idempotency_key_conflict": IdempotencyKeyConflict,
    "transaction_aborted": TransactionAborted,
    "transaction_conflict": TransactionConflict,
    "transaction_not_pending": TransactionNotPending,
    "transaction_exists": TransactionExists,
    "transaction_not_found": TransactionNotFound,
    "message_too_large": MessageTooLarge,
    "request_too_large": RequestTooLarge,
    "queue_full": QueueFull,
    "internal": InternalServerError,
    "no_leader": ServiceUnavailable,
    "not_leader": ServiceUnavailable,
    "overloaded": ServiceUnavailable,
    "timeout": ServiceUnavailable,
    "not_ready": ServiceUnavailable,
    "outcome_unknown": ServiceUnavailable,
}


class _RetriesExhausted(RaftQueueError):
    def __init__(
        self,
        message: str,
        *,
        attempts: int,
        reasons: tuple[str, ...] = (),
        last_problem: ApiError | None = None,
    ) -> None:
        detail = message
        if reasons:
            detail += " [" + "; ".join(reasons) + "]"
        super().__init__(detail)
        #: How many times the request was sent (redirect hops do not count).
        self.attempts = attempts
        #: One line per failed attempt, oldest first: which node, and what went wrong.
        self.reasons = reasons
        #: The last problem a server answered with, if any attempt got one.
        self.last_problem = last_problem


class UnavailableError(_RetriesExhausted):
    """Every attempt failed in a way that proves nothing was applied (connection refused, no leader,
    overloaded, ...), and the attempts ran out. Sending the request again later is safe.

    A question about one node (``readiness``, ``state_digest``) has one attempt: this is raised, with
    ``attempts=1``, when that node gave no answer."""


class OutcomeUnknownError(_RetriesExhausted):
    """The attempts ran out and at least one of them may have been applied: the operation may or may not
    have happened. This is *not* a failure of the operation.

    For an enqueue, resend with the same idempotency key(s) (``idempotency_key`` / ``idempotency_keys``) and
    the answer (``duplicate`` or new) is the truth. For a transaction, resend with the same ``transaction_id``
    (the recorded outcome comes back with ``duplicate=True``). For a receive, resend with the same
    ``receive_attempt_id`` to get what was leased, or leave it: the messages become ready again when their
    visibility timeout runs out.
    """

    def __init__(
        self,
        message: str,
        *,
        attempts: int,
        reasons: tuple[str, ...] = (),
        last_problem: ApiError | None = None,
        idempotency_keys: tuple[str, ...] = (),
        transaction_id: str | None = None,
        receive_attempt_id: str | None = None,
    ) -> None:
        super().__init__(message, attempts=attempts, reasons=reasons, last_problem=last_problem)
        #: Every idempotency key the request carried, in message order (empty for operations without any).
        self.idempotency_keys = idempotency_keys
        #: The transaction the request was about: send it again with this ID (and the same ops) to learn the
        #: outcome; the server never applies it twice.
        self.transaction_id = transaction_id
        #: A receive's attempt ID: a receive with this ID returns what the lost attempt leased.
        self.receive_attempt_id = receive_attempt_id

    @property
    def idempotency_key(self) -> str | None:
        """The key of a single-message enqueue (``None`` for other operations; for a batch, the first key)."""
        return self.idempotency_keys[0] if self.idempotency_keys else None


class ProtocolError(RaftQueueError):
    """The server's answer is not the API: bad JSON, a missing field, an unexpected status, a redirect without
    a ``Location``."""

    def __init__(self, message: str, *, status: int | None = None, node_url: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.node_url = node_url


class ClientClosedError(RaftQueueError):
    """The client was used after ``close()``."""


def error_from_problem(
    status: int,
    code: str,
    detail: str,
    *,
    field: str | None = None,
    retry: str | None = None,
    title: str | None = None,
    outcome: str | None = None,
    retry_after_s: float | None = None,
    node_url: str | None = None,
    reason: str | None = None,
    failures: Sequence[TransactionFailure] = (),
    transaction_id: str | None = None,
    decided_index: int | None = None,
    duplicate: bool = False,
) -> ApiError:
    """The exception for one problem answer: the class is chosen by ``code`` alone. ``reason``, ``failures``,
    ``transaction_id``, ``decided_index`` and ``duplicate`` are kept by ``TransactionAborted`` only."""
    cls = CODE_TO_ERROR.get(code, ApiError)
    if issubclass(cls, TransactionAborted):
        return cls(
            status,
            code,
            detail,
            reason=reason,
            failures=failures,
            transaction_id=transaction_id,
            decided_index=decided_index,
            duplicate=duplicate,
            field=field,
            retry=retry,
            title=title,
            outcome=outcome,
            retry_after_s=retry_after_s,
            node_url=node_url,
        )
    return cls(
        status,
        code,
        detail,
        field=field,
        retry=retry,
        title=title,
        outcome=outcome,
        retry_after_s=retry_after_s,
        node_url=node_url,
    )
