"""Sending one API request to the cluster: which node, following the leader's redirects, and retrying what may
be retried. This is the only module that touches aiohttp; every aiohttp, timeout and OS error is caught here
and turned into a ``RaftQueueError`` (see ``errors``) or a retry.

One *attempt* sends the request to the preferred node with ``?redirect=true`` and follows up to
``MAX_REDIRECTS`` ``307``s by hand (same method, same body). Its result is one of:

- an answer to hand to the caller (2xx, or a definite error such as ``404 queue_not_found``);
- a *safe* failure: provably nothing was applied (connection refused, ``503`` with ``retry: safe``, too many
  redirects);
- an *unknown* failure: the request may have been applied (``503 outcome_unknown``, a timeout, a connection
  lost after sending, a ``502``/``503``/``504`` that is not the API's problem document).

After a failure the client backs off (``retry.RetryPolicy``) and tries the next node, up to ``max_attempts``.
When they run out it raises ``OutcomeUnknownError`` if any attempt of a mutating request had an unknown
outcome, else ``UnavailableError``. Reads cannot have an unknown outcome: they change nothing.

``Transport.send_to`` is the other path, for questions about one node (``/healthz``, ``/readyz``,
``/v1/cluster/digest``), where another node's answer would be a wrong one: a single *pinned* attempt at the named
node, without ``?redirect=true``, not following a ``307``, never retried; whatever the node answers (a ``503``
problem included) is its answer, and no answer is an ``UnavailableError`` after one attempt.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import aiohttp
from aiohttp import ClientHandlerType, ClientMiddlewareType, ClientRequest, ClientResponse
from multidict import CIMultiDictProxy
from yarl import URL

from raft_queue_client.errors import (
    ApiError,
    OutcomeUnknownError,
    ProtocolError,
    RaftQueueError,
    UnavailableError,
)
from raft_queue_client.retry import RetryPolicy, parse_retry_after
from raft_queue_client.wire import Problem, parse_problem

log = logging.getLogger("raft_queue_client")

#: Redirects followed within one attempt.
MAX_REDIRECTS = 3
LEADER_URL_HEADER = "X-Raft-Leader-Url"
#: 503 problem codes that mean "nothing was applied" even if a server omits ``retry``.
_SAFE_503_CODES = frozenset({"no_leader", "not_leader", "overloaded", "not_ready", "timeout"})


@dataclass(frozen=True, slots=True)
class ApiRequest:
    method: str
    #: Already percent-encoded, starting with ``/``.
    path: str
    query: tuple[tuple[str, str], ...] = ()
    body: bytes | None = None
    #: False for reads: they change nothing, so no failure of theirs has an unknown outcome.
    mutates: bool = True
    #: Send ``?redirect=true`` (every ``/v1`` call except those any node answers for itself: ``/v1/cluster``, and
    #: the questions about one node that ``send_to`` asks).
    redirect: bool = True
    #: Added to the per-attempt timeout (a long poll's ``wait_s``).
    extra_timeout_s: float = 0.0
    #: Carried into ``OutcomeUnknownError`` (what to resend with to learn the outcome).
    idempotency_keys: tuple[str, ...] = ()
    transaction_id: str | None = None
    receive_attempt_id: str | None = None


@dataclass(frozen=True, slots=True)
class ApiReply:
    """An answer to hand to the operation: a 2xx, or an error that is not retried."""

    status: int
    body: bytes
    content_type: str
    node_url: str
    problem: Problem | None
    retry_after_s: float | None
    #: An earlier attempt of this request may have been applied (its outcome was unknown).
    after_unknown: bool

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    def error(self) -> RaftQueueError:
        """The exception for a non-2xx answer."""
        if self.problem is None:
            return ProtocolError(
                f"{self.node_url} answered {self.status} without a problem document",
                status=self.status,
                node_url=self.node_url,
            )
        return self.problem.to_error(self.status, retry_after_s=self.retry_after_s, node_url=self.node_url)


@dataclass(frozen=True, slots=True)
class RetryEvent:
    """Passed to ``on_retry`` before the client waits and sends again."""

    #: The attempt that just failed (1-based).
    attempt: int
    node_url: str
    reason: str
    #: That attempt may have been applied.
    outcome_unknown: bool
    retry_after_s: float | None
    #: How long the client waits now.
    delay_s: float
    next_node_url: str


@dataclass(frozen=True, slots=True)
class _Failure:
    node_url: str
    reason: str
    unknown: bool
    retry_after_s: float | None = None
    leader_hint: str | None = None
    problem: ApiError | None = None
    cause: BaseException | None = None


class _ResendBlocked(Exception):
    """aiohttp tried to resend a request by itself (it does so once for PUT/DELETE/GET after a dropped
    connection). That would hide an unknown outcome from us, so the resend is refused and the attempt counts
    as "connection lost after sending"."""


def _single_send_guard() -> ClientMiddlewareType:
    calls = 0

    async def guard(request: ClientRequest, handler: ClientHandlerType) -> ClientResponse:
        nonlocal calls
        calls += 1
        if calls > 1:
            raise _ResendBlocked("aiohttp tried to resend the request after the connection was lost")
        return await handler(request)

    return guard


def normalize_url(value: str) -> str | None:
    """``scheme://host[:port][/prefix]`` without a trailing slash, or ``None`` if ``value`` is not an absolute
    http(s) URL without query or fragment."""
    try:
        url = URL(value.strip())
    except (ValueError, TypeError):
        return None
    if url.scheme not in ("http", "https") or not url.host or url.query_string or url.fragment:
        return None
    return str(url).rstrip("/")


def _base_url(target: URL, path: str) -> str:
    """The node base URL in a redirect target: the target without the request's path and query."""
    raw_path = target.raw_path
    prefix = raw_path[: -len(path)] if raw_path.endswith(path) else ""
    return str(target.origin()) + prefix.rstrip("/")


class Transport:
    def __init__(
        self,
        urls: Sequence[str],
        *,
        timeout_s: float,
        policy: RetryPolicy,
        get_session: Callable[[], aiohttp.ClientSession],
        on_retry: Callable[[RetryEvent], None] | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rng: random.Random | None = None,
    ) -> None:
        if isinstance(urls, str):
            raise TypeError("urls must be a sequence of URLs, not one string")
        normalized: list[str] = []
        for raw in urls:
            url = normalize_url(raw)
            if url is None:
                raise ValueError(f"not an absolute http(s) base URL: {raw!r}")
            if url not in normalized:
                normalized.append(url)
        if not normalized:
            raise ValueError("at least one node URL is required")
        if not timeout_s > 0:
            raise ValueError("timeout_s must be > 0")
        self.urls: tuple[str, ...] = tuple(normalized)
        self.timeout_s = timeout_s
        self.policy = policy
        self._get_session = get_session
        self._on_retry = on_retry
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._preferred = self.urls[0]

    @property
    def preferred_url(self) -> str:
        """The node the next request goes to first: the last leader a node named, else the next in line."""
        return self._preferred

    async def send(self, request: ApiRequest) -> ApiReply:
        """Sends ``request`` until it gets an answer to hand back, retrying failures as the module says.

        Raises ``UnavailableError``, ``OutcomeUnknownError`` or ``ProtocolError``."""
        reasons: list[str] = []
        maybe_applied = False
        last_problem: ApiError | None = None
        last_cause: BaseException | None = None
        attempts = self.policy.max_attempts
        for attempt in range(1, attempts + 1):
            node = self._preferred
            result = await self._attempt(node, request, after_unknown=maybe_applied)
            if isinstance(result, ApiReply):
                return result
            unknown = result.unknown and request.mutates
            maybe_applied = maybe_applied or unknown
            reasons.append(result.reason + (" (outcome unknown)" if unknown else ""))
            if result.problem is not None:
                last_problem = result.problem
            last_cause = result.problem or result.cause
            next_node = self._after_failure(result)
            if attempt == attempts:
                break
            # Retry-After is the failing node's word about itself: it floors the wait only when the retry goes back
            # to that node. A retry on another node (a cut-off leader's no_leader) goes after the plain backoff.
            floor = result.retry_after_s if next_node == result.node_url else None
            delay = self.policy.delay_s(attempt, floor, self._rng)
            event = RetryEvent(
                attempt=attempt,
                node_url=result.node_url,
                reason=result.reason,
                outcome_unknown=unknown,
                retry_after_s=result.retry_after_s,
                delay_s=delay,
                next_node_url=next_node,
            )
            log.info(
                "%s %s attempt %d failed (%s); retrying on %s in %.3fs",
                request.method,
                request.path,
                attempt,
                result.reason,
                next_node,
                delay,
            )
            if self._on_retry is not None:
                self._on_retry(event)
            await self._sleep(delay)
        what = f"{request.method} {request.path}"
        if maybe_applied:
            raise OutcomeUnknownError(
                f"{what}: gave up after {attempts} attempts; it may or may not have been applied",
                attempts=attempts,
                reasons=tuple(reasons),
                last_problem=last_problem,
                idempotency_keys=request.idempotency_keys,
                transaction_id=request.transaction_id,
                receive_attempt_id=request.receive_attempt_id,
            ) from last_cause
        raise UnavailableError(
            f"{what}: gave up after {attempts} attempts; it was not applied",
            attempts=attempts,
            reasons=tuple(reasons),
            last_problem=last_problem,
        ) from last_cause

    async def send_to(self, node: str, request: ApiRequest) -> ApiReply:
        """One attempt at ``node`` (any node's base URL, configured or not) and nowhere else, for a question about
        that node, where another node's answer would be a wrong one. Only for requests that change nothing and
        are not redirected (``mutates=False``, ``redirect=False``); a ``ValueError`` otherwise, or for a ``node``
        that is not an absolute http(s) base URL.

        No ``?redirect=true``, no ``307`` followed (one is a ``ProtocolError``: the API does not redirect unless
        asked), no retry, no backoff, no ``on_retry``. Every answer of the node's is handed back, any status: a
        ``503`` with the API's problem document is what the node says (``/readyz`` answers ``503 not_ready``),
        not a reason to go elsewhere. As after any answer, the leader it names becomes the preferred node; a
        failure leaves the preference alone (this was not a request to the cluster).

        Raises ``UnavailableError`` with ``attempts=1`` (the reason in ``reasons``, the original as
        ``__cause__``) when no answer of the node's came back: cannot connect, no answer within ``timeout_s``,
        the connection lost, a truncated or garbled answer, a ``502``/``503``/``504`` that is not the API's
        problem document (something in front of the node answered, not the node). That is the class the retry
        loop raises for a read whose attempts all failed; this path just has one attempt."""
        target = normalize_url(node)
        if target is None:
            raise ValueError(f"not an absolute http(s) base URL: {node!r}")
        if request.mutates or request.redirect:
            raise ValueError("send_to is for reads of one node: mutates=False, redirect=False")
        result = await self._attempt(target, request, after_unknown=False, pinned=True)
        if isinstance(result, ApiReply):
            return result
        raise UnavailableError(
            f"{request.method} {request.path}: {target} did not answer (one attempt, not retried elsewhere)",
            attempts=1,
            reasons=(result.reason,),
            last_problem=result.problem,
        ) from result.problem or result.cause

    # --- one attempt --------------------------------------------------------------------------------------

    async def _attempt(
        self, node: str, request: ApiRequest, *, after_unknown: bool, pinned: bool = False
    ) -> ApiReply | _Failure:
        """One attempt: the request and up to ``MAX_REDIRECTS`` hops, all within the attempt's timeout.
        ``pinned`` (``send_to``): no hop, and every answer that is the node's is an ``ApiReply``."""
        session = self._get_session()
        total_s = self.timeout_s + request.extra_timeout_s
        current = node  # the node of the hop in flight
        try:
            async with asyncio.timeout(total_s):
                query = (("redirect", "true"), *request.query) if request.redirect else request.query
                url = URL(node + request.path + ("?" + urlencode(query) if query else ""), encoded=True)
                for _hop in range(MAX_REDIRECTS + 1):
                    reply = await self._send_once(
                        session,
                        current,
                        url,
                        request=request,
                        total_s=total_s,
                        after_unknown=after_unknown,
                        pinned=pinned,
                    )
                    if isinstance(reply, ApiReply | _Failure):
                        return reply
                    url, current = reply
                return _Failure(current, f"{current}: more than {MAX_REDIRECTS} redirects", False)
        except _ResendBlocked as exc:
            return _Failure(current, f"{current}: connection lost after the request was sent", True, cause=exc)
        except (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError) as exc:
            # Never connected: nothing was sent.
            return _Failure(current, f"{current}: cannot connect ({exc})", False, cause=exc)
        except TimeoutError as exc:
            return _Failure(current, f"{current}: no answer within {total_s:g}s", True, cause=exc)
        except (aiohttp.ClientError, OSError) as exc:
            # Dropped connection, reset, truncated or garbled answer: the request may have been processed.
            return _Failure(current, f"{current}: {type(exc).__name__}: {exc}", True, cause=exc)

    async def _send_once(
        self,
        session: aiohttp.ClientSession,
        node: str,
        url: URL,
        *,
        request: ApiRequest,
        total_s: float,
        after_unknown: bool,
        pinned: bool,
    ) -> ApiReply | _Failure | tuple[URL, str]:
        """One HTTP exchange. A ``307`` returns the URL to follow and its node, which becomes the preferred
        one: the redirect names the leader (unless ``pinned``: then it is classified like any answer)."""
        headers = {"Accept": "application/json, application/problem+json"}
        if request.body is not None:
            headers["Content-Type"] = "application/json"
        # Per-request middlewares replace the session's: keep the caller's, inside our guard.
        session_middlewares: tuple[Any, ...] = tuple(getattr(session, "_middlewares", None) or ())
        async with session.request(
            request.method,
            url,
            data=request.body,
            headers=headers,
            allow_redirects=False,
            timeout=aiohttp.ClientTimeout(total=total_s, sock_connect=self.timeout_s),
            middlewares=(_single_send_guard(), *session_middlewares),
        ) as response:
            leader = self._note_leader(response.headers)
            if response.status == 307 and not pinned:
                target = self._redirect_target(url, response.headers, node)
                self._preferred = leader or _base_url(target, request.path)
                return target, self._preferred
            body = await response.read()
            return self._classify(
                node=node,
                status=response.status,
                content_type=response.content_type,
                body=body,
                headers=response.headers,
                after_unknown=after_unknown,
                pinned=pinned,
            )

    def _classify(
        self,
        *,
        node: str,
        status: int,
        content_type: str,
        body: bytes,
        headers: CIMultiDictProxy[str],
        after_unknown: bool,
        pinned: bool,
    ) -> ApiReply | _Failure:
        if 300 <= status < 400:
            raise ProtocolError(
                f"{node} answered {status}; the API redirects only with 307, and only when asked (?redirect=true)",
                status=status,
                node_url=node,
            )
        retry_after = parse_retry_after(headers.get("Retry-After"))
        problem = parse_problem(content_type, body) if status >= 400 else None
        leader = normalize_url(headers.get(LEADER_URL_HEADER, ""))
        if status == 503 or (status in (502, 504) and problem is None):
            if problem is None:
                return _Failure(
                    node,
                    f"{node}: {status} without a problem document",
                    True,
                    retry_after,
                    leader_hint=leader,
                )
            if problem.retry != "never" and not pinned:
                error = problem.to_error(status, retry_after_s=retry_after, node_url=node)
                safe = problem.retry == "safe" or (
                    problem.retry is None and problem.code in _SAFE_503_CODES and not problem.outcome_unknown
                )
                return _Failure(
                    node,
                    f"{node}: {status} {problem.code}",
                    not safe,
                    retry_after,
                    leader_hint=leader,
                    problem=error,
                )
        return ApiReply(
            status=status,
            body=body,
            content_type=content_type,
            node_url=node,
            problem=problem,
            retry_after_s=retry_after,
            after_unknown=after_unknown,
        )

    @staticmethod
    def _redirect_target(url: URL, headers: CIMultiDictProxy[str], node: str) -> URL:
        location = headers.get("Location")
        if not location:
            raise ProtocolError(f"{node} answered 307 without a Location", status=307, node_url=node)
        try:
            target = url.join(URL(location, encoded=True))
        except (ValueError, TypeError) as exc:
            raise ProtocolError(
                f"{node} answered 307 with a bad Location {location!r}", status=307, node_url=node
            ) from exc
        if target.scheme not in ("http", "https") or not target.host:
            raise ProtocolError(f"{node} answered 307 with a bad Location {location!r}", status=307, node_url=node)
        return target

    # --- choosing the node --------------------------------------------------------------------------------

    def _note_leader(self, headers: CIMultiDictProxy[str]) -> str | None:
        leader = normalize_url(headers.get(LEADER_URL_HEADER, ""))
        if leader is not None:
            self._preferred = leader
        return leader

    def _after_failure(self, failure: _Failure) -> str:
        """Moves the preference off a node that just failed: to the leader it named, else to the next URL."""
        if failure.leader_hint is not None and failure.leader_hint != failure.node_url:
            self._preferred = failure.leader_hint
        elif failure.node_url in self.urls:
            index = self.urls.index(failure.node_url)
            self._preferred = self.urls[(index + 1) % len(self.urls)]
        else:
            self._preferred = self.urls[0]
        return self._preferred
