"""Checker tests on hand-made histories. Helpers to write those histories compactly live here."""

from __future__ import annotations

from chaos.history import Event, HistoryWriter, Json


class Clock:
    """A settable clock for HistoryWriter: each event is 0.01 s after the previous unless told otherwise."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        self.now += 0.01
        return self.now


def writer() -> HistoryWriter:
    return HistoryWriter(clock=Clock())


def enq(body: str, key: str | None = None) -> dict[str, Json]:
    return {"body": body, "key": key}


def enq_ok(body: str, message_id: str, key: str | None = None) -> dict[str, Json]:
    return {"body": body, "key": key, "message_id": message_id}


def msg(body: str, message_id: str | None = None, receipt: str | None = None, count: int = 1) -> dict[str, Json]:
    mid = message_id or f"id-{body}"
    return {"message_id": mid, "body": body, "receipt": receipt or f"r-{mid}-{count}", "delivery_count": count}


def enqueue(w: HistoryWriter, process: int, body: str, *, key: str | None = None, queue: str = "q") -> Event:
    """A sequential ok enqueue; returns its completion."""
    inv = w.invoke(process, "enqueue", queue, enq(body, key), node="n1")
    return w.ok(inv, enq_ok(body, f"id-{body}", key))


def receive(w: HistoryWriter, process: int, *bodies: str, queue: str = "q", max_messages: int = 1) -> list[str]:
    """A sequential ok receive returning ``bodies`` (first delivery of each); returns their receipts."""
    inv = w.invoke(process, "receive", queue, {"max_messages": max_messages}, node="n1")
    got = [msg(b) for b in bodies]
    w.ok(inv, list(got))
    return [str(m["receipt"]) for m in got]


def ack(
    w: HistoryWriter, process: int, receipts: list[str], outcomes: list[str] | None = None, queue: str = "q"
) -> None:
    """A sequential ok ack; every outcome 'acked' unless given."""
    inv = w.invoke(process, "ack", queue, {"receipts": list(receipts)}, node="n1")
    out: list[Json] = list(outcomes or ["acked"] * len(receipts))
    w.ok(inv, {"receipts": list(receipts), "outcomes": out})


def drain(w: HistoryWriter, *messages: dict[str, Json], queue: str = "q", process: int = 99) -> None:
    inv = w.invoke(process, "drain", queue, None)
    w.ok(inv, list(messages))
