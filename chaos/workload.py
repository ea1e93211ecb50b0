"""The total-queue workload: writers enqueue unique bodies, consumers receive one at a time and ack; all recorded.

Every request goes to one node with a short timeout (2 s), and is recorded as an invoke before it is sent and one
completion after (see :mod:`chaos.history`). Each writer and consumer takes the nodes in turn (starting at a
different one) but, as a client with several endpoints does, passes over a node that has just failed it (no answer,
an unknown outcome, a refused connection, a 503) for :data:`AVOID_S` seconds; when every node has, it takes the one
it avoids the shortest (:class:`NodeChooser`). Without that, a node that holds each request to the timeout (a cut-off
leader) stalls every process once per round and the workload's own pacing, not the cluster, sets the goodput after a
fault (chaos/DESIGN.md, "The workload's pacing"). The answers:

- ``2xx`` is ``ok``;
- ``4xx`` is ``fail``, and so is a ``503`` whose problem says ``"retry": "safe"`` (nothing was applied), and a
  refused connection (the request never reached a node);
- anything else (a timeout, a connection dropped after sending, a ``503 outcome_unknown``, a ``500``) is ``info``.

A writer gives each logical message the body ``w{worker}-{n}``, with the body as its idempotency key. An enqueue
whose outcome is unknown (or that failed safely) is retried later, on another node, as a new operation with the same
body and key. A consumer receives ``max_messages=1`` with a lease that outlives the workload (so no lease runs out
during the test: the linearizability model needs that) and acks the receipt, retrying the ack with the same receipt
until its outcome is known.

:func:`drain` is the final read-out of a queue after healing: it waits until no message is leased or delayed (a
receive with an unknown outcome may have leased one), then receives and acks everything, recorded as one ``drain``
operation.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from chaos.history import Event, HistoryWriter, Json

Outcome = Literal["ok", "fail", "info"]
#: how long a process passes over a node that failed it: longer than one request's timeout plus an election
#: timeout (2 s + 1.2 s), so that a node that cannot answer costs each process about one timeout per fault
AVOID_S = 3.5


@dataclass(frozen=True)
class Node:
    node_id: str
    url: str


@dataclass(frozen=True)
class Answer:
    outcome: Outcome
    status: int | None
    body: Any
    error: str | None


def _problem_code(body: Any) -> str:
    if isinstance(body, dict):
        return str(body.get("code", "?"))
    return "?"


def classify(status: int, body: Any) -> Answer:
    """Maps an HTTP answer to ok / fail / info."""
    if 200 <= status < 300:
        return Answer("ok", status, body, None)
    error = f"{status} {_problem_code(body)}"
    if 400 <= status < 500:
        return Answer("fail", status, body, error)
    if status == 503 and isinstance(body, dict) and body.get("retry") == "safe" and body.get("outcome") != "unknown":
        return Answer("fail", status, body, error)
    return Answer("info", status, body, error)


def request(url: str, method: str, body: Json, timeout: float) -> Answer:
    """One HTTP request, classified; never raises for network trouble."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            raw = resp.read()
            return classify(resp.status, json.loads(raw) if raw else None)
    except urllib.error.HTTPError as err:
        with err:
            raw = err.read()
        try:
            parsed = json.loads(raw) if raw else None
        except ValueError:
            parsed = None
        return classify(err.code, parsed)
    except urllib.error.URLError as err:
        if isinstance(err.reason, ConnectionRefusedError):
            return Answer("fail", None, None, "connection refused")
        if isinstance(err.reason, TimeoutError):
            return Answer("info", None, None, "timeout")
        return Answer("info", None, None, f"connection error: {err.reason!r}"[:200])
    except TimeoutError:
        return Answer("info", None, None, "timeout")
    except ConnectionRefusedError:
        return Answer("fail", None, None, "connection refused")
    except (OSError, ValueError) as err:
        return Answer("info", None, None, f"connection error: {err!r}"[:200])


def _delivery(m: Any) -> dict[str, Json]:
    return {
        "message_id": m["message_id"],
        "body": m["body"],
        "receipt": m.get("receipt"),
        "delivery_count": m.get("delivery_count"),
    }


def _retryable_fail(answer: Answer) -> bool:
    """A definite failure that says nothing about the request itself: try it again."""
    return answer.status in (None, 503)


def node_failed(answer: Answer) -> bool:
    """The node did not serve the request: no answer, an unknown outcome, a refused connection, a 5xx."""
    return answer.outcome == "info" or (answer.outcome == "fail" and _retryable_fail(answer))


class NodeChooser:
    """One process's choice of node for each request: the nodes in turn from ``first``, passing over for
    ``avoid_s`` a node that failed it (:func:`node_failed`); if every node did, the one whose avoidance ends first."""

    def __init__(
        self,
        nodes: Sequence[Node],
        first: int,
        avoid_s: float = AVOID_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.nodes = nodes
        self.turn = first
        self.avoid_s = avoid_s
        self.clock = clock
        #: node id -> until when (clock time) it is passed over
        self.avoid_until: dict[str, float] = {}

    def next(self) -> Node:
        now = self.clock()
        count = len(self.nodes)
        for k in range(count):
            node = self.nodes[(self.turn + k) % count]
            if self.avoid_until.get(node.node_id, now) <= now:
                self.turn += k + 1
                return node
        node = min(self.nodes, key=lambda n: self.avoid_until[n.node_id])
        self.turn = self.nodes.index(node) + 1
        return node

    def answered(self, node: Node, answer: Answer) -> None:
        if node_failed(answer):
            self.avoid_until[node.node_id] = self.clock() + self.avoid_s
        else:
            self.avoid_until.pop(node.node_id, None)


@dataclass
class Workload:
    history: HistoryWriter
    nodes: Sequence[Node]
    queues: Sequence[str]
    writers: int = 3
    consumers: int = 2
    request_timeout_s: float = 2.0
    #: how long a process passes over a node that failed it (see NodeChooser)
    avoid_s: float = AVOID_S
    #: leases given by consumers' receives last until this monotonic time (plus at least ``min_lease_s``)
    lease_until: float = 0.0
    min_lease_s: float = 5.0
    #: writers stop
    stop_writers: threading.Event = field(default_factory=threading.Event)
    #: consumers stop receiving (they still finish the ack in hand, until ``abandon``)
    stop_consumers: threading.Event = field(default_factory=threading.Event)
    #: give up on everything (acks in hand included)
    abandon: threading.Event = field(default_factory=threading.Event)
    #: the time of each writer's latest ok enqueue (monotonic), by writer
    last_ok: dict[int, float] = field(default_factory=dict)
    _threads: list[threading.Thread] = field(default_factory=list)

    def start(self) -> None:
        for w in range(self.writers):
            self._threads.append(threading.Thread(target=self._writer, args=(w,), name=f"writer-{w}", daemon=True))
        for c in range(self.consumers):
            self._threads.append(threading.Thread(target=self._consumer, args=(c,), name=f"consumer-{c}", daemon=True))
        for t in self._threads:
            t.start()

    def join(self, timeout: float) -> bool:
        """Stops everything, waits up to ``timeout``; returns whether every thread ended."""
        self.stop_writers.set()
        self.stop_consumers.set()
        deadline = time.monotonic() + timeout
        for t in self._threads:
            t.join(max(0.0, deadline - time.monotonic()))
            if t.is_alive():
                self.abandon.set()
        for t in self._threads:
            t.join(max(0.1, deadline + 5 - time.monotonic()))
        return not any(t.is_alive() for t in self._threads)

    # -- one recorded operation ----------------------------------------------------------------------------------

    def _op(
        self, process: int, f: str, queue: str, nodes: NodeChooser, *, path: str, value: Json, body: Json
    ) -> Answer:
        node = nodes.next()
        inv = self.history.invoke(process, f, queue, value, node=node.node_id)
        answer = request(node.url + path, "POST", body, self.request_timeout_s)
        nodes.answered(node, answer)
        self._complete(inv, answer, value)
        return answer

    def _complete(self, inv: Event, answer: Answer, value: Json) -> None:
        if answer.outcome == "ok":
            self.history.ok(inv, self._ok_value(inv.f, value, answer.body))
        elif answer.outcome == "fail":
            self.history.fail(inv, answer.error or "fail", value=value)
        else:
            self.history.info(inv, answer.error or "unknown", value=value)

    @staticmethod
    def _ok_value(f: str, value: Json, body: Any) -> Json:
        if f == "enqueue":
            assert isinstance(value, dict)
            return {**value, "message_id": body["message_id"], "duplicate": bool(body.get("duplicate", False))}
        if f == "receive":
            return [_delivery(m) for m in body["messages"]]
        if f == "ack":
            assert isinstance(value, dict)
            return {"receipts": value["receipts"], "outcomes": [r["outcome"] for r in body["results"]]}
        return None

    # -- writers -------------------------------------------------------------------------------------------------

    def _writer(self, w: int) -> None:
        process = w
        n = 0
        nodes = NodeChooser(self.nodes, w, self.avoid_s)
        retry: list[tuple[str, str]] = []  # (queue, body) to send again
        while not self.stop_writers.is_set() and not self.abandon.is_set():
            if retry:
                queue, body = retry.pop(0)
            else:
                body = f"w{w}-{n}"
                queue = self.queues[n % len(self.queues)]
                n += 1
            value: dict[str, Json] = {"body": body, "key": body}
            answer = self._op(
                process,
                "enqueue",
                queue,
                nodes,
                path=f"/v1/queues/{queue}/messages",
                value=value,
                body={"body": body, "idempotency_key": body},
            )
            if answer.outcome == "ok":
                self.last_ok[w] = time.monotonic()
                continue
            if answer.outcome == "info" or _retryable_fail(answer):
                retry.append((queue, body))
            self.stop_writers.wait(0.05)

    # -- consumers -----------------------------------------------------------------------------------------------

    def _consumer(self, c: int) -> None:
        process = self.writers + c
        nodes = NodeChooser(self.nodes, c, self.avoid_s)
        k = 0
        while not self.stop_consumers.is_set() and not self.abandon.is_set():
            queue = self.queues[k % len(self.queues)]
            k += 1
            lease = round(max(self.min_lease_s, self.lease_until - time.monotonic()), 3)
            value: dict[str, Json] = {"max_messages": 1, "visibility_timeout_s": lease}
            answer = self._op(
                process, "receive", queue, nodes, path=f"/v1/queues/{queue}/receive", value=value, body=value
            )
            if answer.outcome != "ok":
                self.stop_consumers.wait(0.05)
                continue
            messages = answer.body["messages"]
            if not messages:
                self.stop_consumers.wait(0.02)
                continue
            for m in messages:
                self._ack(process, queue, m["receipt"], nodes)

    def _ack(self, process: int, queue: str, receipt: str, nodes: NodeChooser) -> None:
        """Acks until the outcome is known (ok, or a definite non-retryable failure), or ``abandon``."""
        while not self.abandon.is_set():
            value: dict[str, Json] = {"receipts": [receipt]}
            answer = self._op(process, "ack", queue, nodes, path=f"/v1/queues/{queue}/ack", value=value, body=value)
            if answer.outcome == "ok" or (answer.outcome == "fail" and not _retryable_fail(answer)):
                return
            self.abandon.wait(0.05)


# ---------------------------------------------------------------------------------------------------------------
# The final drain


def _counts(nodes: Sequence[Node], queue: str, timeout: float) -> dict[str, Any] | None:
    for node in nodes:
        answer = request(node.url + f"/v1/queues/{queue}", "GET", None, timeout)
        if answer.outcome == "ok" and isinstance(answer.body, dict):
            counts = answer.body.get("counts")
            if isinstance(counts, dict):
                return counts
    return None


def wait_nothing_hidden(nodes: Sequence[Node], queue: str, deadline: float) -> bool:
    """Polls until the queue has no leased or delayed message (linearizable read), or ``deadline``."""
    while time.monotonic() < deadline:
        counts = _counts(nodes, queue, 2.0)
        if counts is not None and counts.get("leased") == 0 and counts.get("delayed") == 0:
            return True
        time.sleep(0.2)
    return False


def drain(
    history: HistoryWriter,
    process: int,
    nodes: Sequence[Node],
    queue: str,
    *,
    deadline: float,
    lease_s: float = 30.0,
    timeout_s: float = 5.0,
    f: str = "drain",
) -> bool:
    """Receives and acks every message of ``queue``, recorded as one ``drain``; returns whether it completed.

    ``f`` names the recorded operation: another workload's queues are drained under their own name (e.g.
    ``txn-drain``), so that the checkers that read ``drain`` (total queue, exactly-once) never see them.

    Messages are read in batches; each batch's receipts are acked (retried until ``acked``). A receive with an
    unknown outcome may have leased messages: the drain then waits until nothing is leased and goes on. If the
    deadline passes first, the drain is recorded as ``info`` (incomplete: its result is unknown).
    """
    node = nodes[0]
    inv = history.invoke(process, f, queue, None, node=node.node_id)
    acks = _DrainAcks(nodes, queue, deadline, timeout_s)
    while time.monotonic() < deadline:
        node = nodes[acks.turn % len(nodes)]
        body: dict[str, Json] = {"max_messages": 100, "visibility_timeout_s": lease_s}
        answer = request(node.url + f"/v1/queues/{queue}/receive", "POST", body, timeout_s)
        if answer.outcome != "ok":
            acks.turn += 1
            if answer.outcome == "info":
                wait_nothing_hidden(nodes, queue, deadline)
            else:
                time.sleep(0.1)
            continue
        messages = answer.body["messages"]
        if not messages:
            if wait_nothing_hidden(nodes, queue, deadline):
                counts = _counts(nodes, queue, timeout_s)
                if counts is not None and counts.get("ready") == 0 and counts.get("leased") == 0:
                    history.ok(inv, acks.got + list(acks.maybe_acked.values()), node=node.node_id)
                    return True
            continue
        acks.ack(messages)
    history.info(inv, "drain deadline passed", value=acks.got)
    return False


class _DrainAcks:
    """The acks of a :func:`drain`: what it read for certain, and what an ack with an unknown outcome may have
    deleted (by message id)."""

    def __init__(self, nodes: Sequence[Node], queue: str, deadline: float, timeout_s: float) -> None:
        self.nodes = nodes
        self.queue = queue
        self.deadline = deadline
        self.timeout_s = timeout_s
        self.got: list[Json] = []
        self.maybe_acked: dict[str, Json] = {}
        #: which node to ask next (round robin, moved on after each failure)
        self.turn = 0

    def ack(self, messages: list[dict[str, Any]]) -> None:
        """Acks one received batch until each receipt has a definite outcome, or the deadline."""
        nodes, queue = self.nodes, self.queue
        for m in messages:
            # received again: an earlier ack with an unknown outcome did not delete it
            self.maybe_acked.pop(m["message_id"], None)
        receipts = [m["receipt"] for m in messages]
        unsure = False  # an earlier ack of these receipts had an unknown outcome
        while receipts and time.monotonic() < self.deadline:
            url = nodes[self.turn % len(nodes)].url + f"/v1/queues/{queue}/ack"
            ack = request(url, "POST", {"receipts": receipts}, self.timeout_s)
            if ack.outcome == "ok":
                outcomes = {r["receipt"]: r["outcome"] for r in ack.body["results"]}
                for m in messages:
                    if outcomes.get(m["receipt"]) in ("acked", "already_acked"):  # already: our earlier attempt
                        self.got.append(_delivery(m))
                    elif unsure and outcomes.get(m["receipt"]) == "stale":
                        # our earlier ack may have deleted it; if it was not, it comes back and is read again
                        self.maybe_acked[m["message_id"]] = _delivery(m)
                done = ("acked", "already_acked", "stale", "invalid")
                receipts = [r for r in receipts if outcomes.get(r) not in done]
                messages = [m for m in messages if m["receipt"] in receipts]
            else:
                unsure = unsure or ack.outcome == "info"
                self.turn += 1
                time.sleep(0.1)
