"""The transaction workload: consume-transform-produce, exactly once, from queue ``tsrc`` to queue ``tdst``.

It runs beside the total-queue workload (:mod:`chaos.workload`), on its own queues and under its own ``f`` names
and process ids, so the other checkers never see it (they select ``enqueue``/``receive``/``ack``/``drain`` ops, and
the linearizability checker is given its queues by name). Every request is recorded as an invoke before it is sent
and one completion after, classified as in :mod:`chaos.workload` (``ok``, ``fail`` when nothing was applied,
``info`` when the outcome is unknown).

- **setup** (:meth:`TxnWorkload.setup`, before the faults): ``inputs`` messages ``in-0`` .. ``in-{N-1}`` are
  enqueued to ``tsrc`` in batches, each body its own idempotency key, retried until ok (``f = "txn-setup"``, invoke
  ``{"bodies": [...], "keys": [...]}``, ok adds ``"message_ids"``).
- **transformers** (1-2 threads, paced to at most ``max_rate_per_s`` transactions a second between them): receive
  one message from ``tsrc`` with a short lease (``lease_s``, 5 s: a lease lost with its client comes back soon) and
  a ``receive_attempt_id`` reused by every retry of that receive (``f = "txn-receive"``, ok: the deliveries, as for
  ``receive``); then ``POST /v1/transactions`` with ``transaction_id = "xf-" + input message_id`` and the operations
  [ack the receipt in ``tsrc``, enqueue ``"out-" + input body`` to ``tdst``] (``f = "txn"``, invoke
  ``{"transaction_id", "input", "input_message_id", "receipt", "output"}``, ok adds ``"duplicate"``,
  ``"decided_index"``, ``"ack_outcomes"`` and ``"output_message_id"``). Every ``stall_every``-th message (40th) a
  transformer holds past its lease before sending the transaction (a slow worker), so that stale receipts occur in
  every run, not only after faults: its transaction aborts, or conflicts when the other transformer has received
  the input again and committed it first. An unknown outcome (timeout, dropped connection, ``503
  outcome_unknown``) or a safe failure (``503`` saying nothing was applied, a refused connection) is retried with
  the same request on the next node until the answer is definite. ``409 transaction_aborted`` (the
  receipt went stale: the lease ran out) drops the message: it is visible again and is transformed by whoever
  receives it next, under the same ID. ``409 transaction_conflict`` means another transformer committed that ID
  with its own receipt; it is followed by one ``GET /v1/transactions/{id}`` (``f = "txn-get"``, ok
  ``{"transaction_id", "status", "decided_index", "output_message_id"}``).
- **finish** (:meth:`TxnWorkload.finish`, after healing): pacing is lifted and the transformers run until ``tsrc``
  holds nothing (ready, leased or delayed) or a deadline passes; then they stop (a transaction in hand is retried
  until its outcome is known, or abandoned at the deadline).
- **drain** (:meth:`TxnWorkload.drain`): ``tsrc`` first (after the leases an unknown receive or an abandoned
  transformer may hold have run out, so a late transaction can no longer commit), then ``tdst``, each recorded as
  one ``txn-drain`` (shaped like ``drain``).

Process ids: ``process_base`` (default 100) for the setup, ``process_base + 1 + t`` for transformer ``t``, and the
two following ids for the drains of ``tsrc`` and ``tdst`` (:attr:`TxnWorkload.drain_processes`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from chaos.history import Event, HistoryWriter, Json
from chaos.workload import Answer, Node, drain, request

SOURCE = "tsrc"
TARGET = "tdst"
QUEUES = (SOURCE, TARGET)
PROCESS_BASE = 100
SETUP_BATCH = 100


def input_body(k: int) -> str:
    return f"in-{k}"


def output_body(input_: str) -> str:
    return "out-" + input_


def transaction_id(input_message_id: str) -> str:
    return "xf-" + input_message_id


def _problem_code(body: Any) -> str | None:
    return str(body.get("code")) if isinstance(body, dict) and body.get("code") is not None else None


def _retryable(answer: Answer) -> bool:
    """Nothing was applied, and the reason is not the request: a refused connection, a 503 that says so."""
    return answer.outcome == "fail" and answer.status in (None, 503)


def _committed_summary(body: Any) -> dict[str, Json]:
    """The parts of a committed Transaction the checker reads (None where the answer lacks them)."""
    out: dict[str, Json] = {"duplicate": None, "decided_index": None, "ack_outcomes": None, "output_message_id": None}
    if not isinstance(body, dict):
        return out
    out["duplicate"] = bool(body.get("duplicate", False))
    decided = body.get("decided_index")
    out["decided_index"] = decided if isinstance(decided, int) else None
    if "status" in body:
        out["status"] = str(body["status"])
    for result in body.get("results") or []:
        if not isinstance(result, dict):
            continue
        if result.get("op") == "ack" and isinstance(result.get("outcomes"), list):
            out["ack_outcomes"] = [str(o) for o in result["outcomes"]]
        elif result.get("op") == "enqueue" and isinstance(result.get("messages"), list) and result["messages"]:
            first = result["messages"][0]
            if isinstance(first, dict) and isinstance(first.get("message_id"), str):
                out["output_message_id"] = first["message_id"]
    return out


@dataclass
class TxnWorkload:
    history: HistoryWriter
    nodes: Sequence[Node]
    inputs: int
    transformers: int = 2
    #: transactions started per second, at most, by all transformers together (until :meth:`finish`)
    max_rate_per_s: float = 15.0
    lease_s: float = 5.0
    #: every ``stall_every``-th message a transformer receives (until :meth:`finish`; 0: never) is held past its
    #: lease before the transaction is sent, so that the stale-receipt paths run in every test
    stall_every: int = 40
    request_timeout_s: float = 2.0
    process_base: int = PROCESS_BASE
    #: transformers stop receiving (a transaction in hand is still retried until its outcome is known)
    stop: threading.Event = field(default_factory=threading.Event)
    #: give up on everything, transactions in hand included
    abandon: threading.Event = field(default_factory=threading.Event)
    #: no pacing any more (set by :meth:`finish`: the other workload has stopped)
    unpaced: threading.Event = field(default_factory=threading.Event)
    #: ok transaction answers so far (the runner reads it for its progress line)
    committed: int = 0
    _threads: list[threading.Thread] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def drain_processes(self) -> tuple[int, int]:
        first = self.process_base + 1 + self.transformers
        return first, first + 1

    # -- setup ---------------------------------------------------------------------------------------------------

    def setup(self, deadline: float) -> None:
        """Enqueues every input to ``tsrc`` (batches keyed by body, retried until ok); raises if ``deadline`` passes."""
        bodies = [input_body(k) for k in range(self.inputs)]
        turn = 0
        for i in range(0, len(bodies), SETUP_BATCH):
            chunk = bodies[i : i + SETUP_BATCH]
            value: dict[str, Json] = {"bodies": list(chunk), "keys": list(chunk)}
            req: Json = {"messages": [{"body": b, "idempotency_key": b} for b in chunk]}
            while True:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"could not enqueue the transaction workload's inputs to {SOURCE}")
                node = self.nodes[turn % len(self.nodes)]
                turn += 1
                inv = self.history.invoke(self.process_base, "txn-setup", SOURCE, value, node=node.node_id)
                answer = request(node.url + f"/v1/queues/{SOURCE}/messages", "POST", req, self.request_timeout_s)
                if answer.outcome == "ok":
                    ids: list[Json] = [m["message_id"] for m in answer.body["messages"]]
                    self.history.ok(inv, {**value, "message_ids": ids})
                    break
                self._incomplete(inv, answer, value)
                time.sleep(0.2)

    # -- running -------------------------------------------------------------------------------------------------

    def start(self) -> None:
        for t in range(self.transformers):
            thread = threading.Thread(target=self._transformer, args=(t,), name=f"transformer-{t}", daemon=True)
            self._threads.append(thread)
            thread.start()

    def finish(self, deadline: float) -> bool:
        """Lifts the pacing, waits until ``tsrc`` holds nothing or ``deadline``, then stops the transformers.

        Returns whether ``tsrc`` was empty (the transformers may still have been settling one transaction each).
        """
        self.unpaced.set()
        empty = False
        while time.monotonic() < deadline and not empty:
            empty = self.source_empty()
            if not empty:
                time.sleep(0.3)
        self.join(max(5.0, deadline - time.monotonic()))
        return empty

    def source_empty(self) -> bool:
        """Whether ``tsrc`` has no message ready, leased or delayed (a linearizable read on some node)."""
        for node in self.nodes:
            answer = request(node.url + f"/v1/queues/{SOURCE}", "GET", None, self.request_timeout_s)
            if answer.outcome == "ok" and isinstance(answer.body, dict):
                counts = answer.body.get("counts")
                if isinstance(counts, dict):
                    return all(counts.get(k) == 0 for k in ("ready", "leased", "delayed"))
        return False

    def join(self, timeout: float) -> bool:
        """Stops the transformers, waits up to ``timeout`` (then abandons); returns whether every thread ended."""
        self.stop.set()
        deadline = time.monotonic() + timeout
        for t in self._threads:
            t.join(max(0.0, deadline - time.monotonic()))
            if t.is_alive():
                self.abandon.set()
        for t in self._threads:
            t.join(max(0.1, deadline + 5 - time.monotonic()))
        return not any(t.is_alive() for t in self._threads)

    def drain(self, deadline: float) -> bool:
        """Drains ``tsrc`` then ``tdst`` (``txn-drain``); returns whether both completed."""
        done = True
        for process, queue in zip(self.drain_processes, QUEUES, strict=True):
            done = drain(self.history, process, self.nodes, queue, deadline=deadline, f="txn-drain") and done
        return done

    # -- one recorded request ------------------------------------------------------------------------------------

    def _incomplete(self, inv: Event, answer: Answer, value: Json) -> None:
        if answer.outcome == "fail":
            self.history.fail(inv, answer.error or "fail", value=value)
        else:
            self.history.info(inv, answer.error or "unknown", value=value)

    # -- transformers --------------------------------------------------------------------------------------------

    def _transformer(self, t: int) -> None:
        process = self.process_base + 1 + t
        turn = t
        n = 0
        received = 0
        next_start = time.monotonic()
        while not self.stop.is_set() and not self.abandon.is_set():
            if not self.unpaced.is_set():
                pause = next_start - time.monotonic()
                if pause > 0 and self.stop.wait(pause):
                    break
                next_start = time.monotonic() + self.transformers / self.max_rate_per_s
            messages, turn = self._receive(process, f"xf{t}-{n}", turn)
            n += 1
            if messages is None:
                break
            if not messages:
                self.stop.wait(0.1)
                continue
            for m in messages:
                received += 1
                if self.stall_every and received % self.stall_every == 0 and not self.unpaced.is_set():
                    self.stop.wait(self.lease_s + 1.0)
                turn = self._transact(process, m, turn)

    def _receive(self, process: int, attempt: str, turn: int) -> tuple[list[dict[str, Any]] | None, int]:
        """One logical receive, retried under the same attempt ID until its answer is known; None once stopped."""
        value: dict[str, Json] = {
            "max_messages": 1,
            "visibility_timeout_s": self.lease_s,
            "receive_attempt_id": attempt,
        }
        while not self.stop.is_set() and not self.abandon.is_set():
            node = self.nodes[turn % len(self.nodes)]
            turn += 1
            inv = self.history.invoke(process, "txn-receive", SOURCE, value, node=node.node_id)
            answer = request(node.url + f"/v1/queues/{SOURCE}/receive", "POST", value, self.request_timeout_s)
            if answer.outcome == "ok":
                messages = list(answer.body["messages"])
                self.history.ok(
                    inv,
                    [
                        {
                            "message_id": m["message_id"],
                            "body": m["body"],
                            "receipt": m.get("receipt"),
                            "delivery_count": m.get("delivery_count"),
                        }
                        for m in messages
                    ],
                )
                return messages, turn
            self._incomplete(inv, answer, value)
            if answer.outcome == "fail" and not _retryable(answer):
                return [], turn
            self.stop.wait(0.1)
        return None, turn

    def _count_committed(self) -> None:
        with self._lock:
            self.committed += 1

    def _transact(self, process: int, m: dict[str, Any], turn: int) -> int:
        """Commits [ack m, enqueue its output] under the ID derived from m, retrying until the outcome is known."""
        tid = transaction_id(m["message_id"])
        out = output_body(m["body"])
        value: dict[str, Json] = {
            "transaction_id": tid,
            "input": m["body"],
            "input_message_id": m["message_id"],
            "receipt": m["receipt"],
            "output": out,
        }
        req: Json = {
            "transaction_id": tid,
            "operations": [
                {"op": "ack", "queue": SOURCE, "receipts": [m["receipt"]]},
                {"op": "enqueue", "queue": TARGET, "messages": [{"body": out}]},
            ],
        }
        while not self.abandon.is_set():
            node = self.nodes[turn % len(self.nodes)]
            turn += 1
            inv = self.history.invoke(process, "txn", SOURCE, value, node=node.node_id)
            answer = request(node.url + "/v1/transactions", "POST", req, self.request_timeout_s)
            if answer.outcome == "ok":
                self.history.ok(inv, {**value, **_committed_summary(answer.body)})
                self._count_committed()
                return turn
            if answer.outcome == "fail":
                failures = answer.body.get("failures") if isinstance(answer.body, dict) else None
                codes: list[Json] = [
                    str(f.get("code")) for f in failures or [] if isinstance(f, dict) and f.get("code") is not None
                ]
                self.history.fail(inv, answer.error or "fail", value={**value, "failures": codes})
                if _problem_code(answer.body) == "transaction_conflict":
                    return self._get(process, tid, turn)
                if not _retryable(answer):
                    return turn  # aborted (stale receipt: the input comes back) or refused: drop it
            else:
                self.history.info(inv, answer.error or "unknown", value=value)
            self.abandon.wait(0.1)
        return turn

    def _get(self, process: int, tid: str, turn: int) -> int:
        """One linearizable read of a transaction another transformer committed (after a conflict)."""
        node = self.nodes[turn % len(self.nodes)]
        value: dict[str, Json] = {"transaction_id": tid}
        inv = self.history.invoke(process, "txn-get", SOURCE, value, node=node.node_id)
        answer = request(node.url + f"/v1/transactions/{tid}", "GET", None, self.request_timeout_s)
        if answer.outcome == "ok":
            summary = _committed_summary(answer.body)
            self.history.ok(
                inv,
                {
                    "transaction_id": tid,
                    "status": summary.get("status"),
                    "decided_index": summary["decided_index"],
                    "output_message_id": summary["output_message_id"],
                },
            )
        else:
            self._incomplete(inv, answer, value)
        return turn + 1
