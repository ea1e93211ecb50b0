"""Total queue (Jepsen's ``total-queue``): every acknowledged message comes out, none twice, none from nowhere.

Messages are identified by body (the workload gives each logical message its own body; a retry reuses it).

- **attempted**: bodies of every enqueue invoke.
- **acknowledged**: bodies of ok enqueues.
- **dequeued** (a multiset): one entry per *consume*: an ok ack whose outcome for a receipt is ``acked`` (the
  receipt names the delivery an ok receive returned), and one per message in an ok ``drain``. The same receipt
  acked twice is one consume (one delivery, settled twice). A message *received* twice (its lease ran out before
  the ack, so the first ack says ``stale``) is not a duplicate: only consumes count.
- **lost** = acknowledged, never dequeued, and not *uncertain*.
- **uncertain** = received, then an ack of that delivery had an unknown outcome (info), and never dequeued: the
  ack may have deleted it, so it is neither lost nor dequeued. Reported, never counted as lost.
- **unexpected** = dequeued but no enqueue that could have taken effect: never attempted, or every attempt
  definitely failed (``fail`` means it did not happen). The second kind is also listed in ``failed_but_dequeued``.
- **duplicated** = dequeued more than once (body -> times).
- **recovered** = attempted with no ok (only info / unfinished attempts) and dequeued: allowed.

``valid`` iff lost, unexpected and duplicated are all empty. A consume of a receipt that no ok receive returned is a
broken history (:class:`~chaos.history.HistoryError`).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal

from chaos.history import (
    Delivery,
    Event,
    HistoryError,
    Operation,
    Process,
    as_operations,
    deliveries,
    enqueue_value,
    settle_outcomes,
    settle_receipts,
)


@dataclass(frozen=True)
class Consume:
    """A message leaving the queue for good: an ok ack with outcome ``acked``, or a drained message."""

    source: Literal["ack", "drain"]
    queue: str | None
    message_id: str
    body: str
    receipt: str | None
    process: Process
    index: int  # the completion event that reported it


@dataclass(frozen=True)
class Consumption:
    consumes: list[Consume]
    #: receipt -> the delivery of an ok receive (or drain) that returned it, and its queue
    deliveries: dict[str, tuple[str | None, Delivery]]
    #: deliveries whose ack outcome is unknown (info / unfinished ack)
    maybe_consumed: list[Delivery]


def consumption(ops: Iterable[Operation]) -> Consumption:
    """Every consume in the history, plus the deliveries that may have been consumed (unknown ack outcome)."""
    ops = list(ops)
    by_receipt: dict[str, tuple[str | None, Delivery]] = {}
    for op in ops:
        if op.f in ("receive", "drain"):
            for d in deliveries(op):
                if d.receipt is not None:
                    by_receipt[d.receipt] = (op.queue, d)
    consumes: list[Consume] = []
    seen_receipts: set[str] = set()
    maybe: list[Delivery] = []
    for op in ops:
        if op.f == "drain" and op.ok:
            consumes.extend(_drained(op, seen_receipts))
        elif op.f == "ack" and op.ok:
            consumes.extend(_acked(op, by_receipt, seen_receipts))
        elif op.f == "ack" and op.type == "info":
            maybe.extend(by_receipt[r][1] for r in settle_receipts(op) if r in by_receipt)
    return Consumption(consumes, by_receipt, maybe)


def _drained(op: Operation, seen_receipts: set[str]) -> list[Consume]:
    """The consumes of an ok drain: what it read, but for receipts already consumed (added to ``seen_receipts``)."""
    assert op.completion is not None
    out: list[Consume] = []
    for d in deliveries(op):
        if d.receipt is not None and d.receipt in seen_receipts:
            continue
        if d.receipt is not None:
            seen_receipts.add(d.receipt)
        out.append(Consume("drain", op.queue, d.message_id, d.body, d.receipt, op.process, op.completion.index))
    return out


def _acked(op: Operation, by_receipt: dict[str, tuple[str | None, Delivery]], seen_receipts: set[str]) -> list[Consume]:
    """The consumes of an ok ack: the receipts it acked, but for those already consumed (added to
    ``seen_receipts``)."""
    assert op.completion is not None
    out: list[Consume] = []
    for receipt, outcome in settle_outcomes(op):
        # already_acked: an earlier attempt of this ack (whose answer was lost) took effect
        if outcome not in ("acked", "already_acked") or receipt in seen_receipts:
            continue
        if receipt not in by_receipt:
            raise HistoryError(f"{op.describe()} acked receipt {receipt!r}, which no ok receive returned")
        queue, d = by_receipt[receipt]
        seen_receipts.add(receipt)
        out.append(Consume("ack", queue, d.message_id, d.body, receipt, op.process, op.completion.index))
    return out


@dataclass(frozen=True)
class QueueResult:
    valid: bool
    attempt_count: int
    acknowledged_count: int
    #: acknowledged and dequeued (Jepsen's ok-count)
    ok_count: int
    dequeue_count: int
    lost_count: int
    unexpected_count: int
    duplicated_count: int
    recovered_count: int
    uncertain_count: int
    lost: list[str]
    unexpected: list[str]
    failed_but_dequeued: list[str]
    #: body -> how many times it was dequeued (only bodies dequeued more than once)
    duplicated: dict[str, int]
    recovered: list[str]
    uncertain: list[str]
    #: process -> lost bodies among the enqueues that process had acknowledged
    lost_by_process: dict[str, int] = field(default_factory=dict)
    acknowledged_by_process: dict[str, int] = field(default_factory=dict)


def check_total_queue(history: Sequence[Event] | Sequence[Operation]) -> QueueResult:
    ops = as_operations(history)
    attempted: set[str] = set()
    acknowledged: set[str] = set()
    failed_only: dict[str, bool] = {}  # body -> every attempt so far definitely failed
    ack_by: dict[str, set[Process]] = defaultdict(set)
    for op in ops:
        if op.f != "enqueue":
            continue
        v = enqueue_value(op)
        attempted.add(v.body)
        failed_only[v.body] = failed_only.get(v.body, True) and op.type == "fail"
        if op.ok:
            acknowledged.add(v.body)
            ack_by[v.body].add(op.process)

    cons = consumption(ops)
    dequeued = Counter(c.body for c in cons.consumes)
    uncertain = {d.body for d in cons.maybe_consumed} - set(dequeued)

    lost = acknowledged - set(dequeued) - uncertain
    never_attempted = set(dequeued) - attempted
    failed_but_dequeued = {b for b in dequeued if failed_only.get(b, False)}
    unexpected = never_attempted | failed_but_dequeued
    duplicated = {b: n for b, n in dequeued.items() if n > 1}
    recovered = (set(dequeued) & attempted) - acknowledged - failed_but_dequeued

    lost_by, acked_by = _by_process(ack_by, lost)
    return QueueResult(
        valid=not lost and not unexpected and not duplicated,
        attempt_count=len(attempted),
        acknowledged_count=len(acknowledged),
        ok_count=len(acknowledged & set(dequeued)),
        dequeue_count=sum(dequeued.values()),
        lost_count=len(lost),
        unexpected_count=len(unexpected),
        duplicated_count=len(duplicated),
        recovered_count=len(recovered),
        uncertain_count=len(uncertain),
        lost=sorted(lost),
        unexpected=sorted(unexpected),
        failed_but_dequeued=sorted(failed_but_dequeued),
        duplicated=dict(sorted(duplicated.items())),
        recovered=sorted(recovered),
        uncertain=sorted(uncertain),
        lost_by_process=dict(sorted(lost_by.items())),
        acknowledged_by_process=dict(sorted(acked_by.items())),
    )


def _by_process(ack_by: dict[str, set[Process]], lost: set[str]) -> tuple[Counter[str], Counter[str]]:
    """Per process: how many of the enqueues it had acknowledged were lost, and how many it had acknowledged."""
    lost_by: Counter[str] = Counter()
    acked_by: Counter[str] = Counter()
    for body, procs in ack_by.items():
        for p in procs:
            acked_by[str(p)] += 1
            if body in lost:
                lost_by[str(p)] += 1
    return lost_by, acked_by
