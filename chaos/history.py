"""Recorded histories: what the chaos clients asked, what they were told, and what the nemesis did.

A history is a JSON-lines file, one event per line, in the order the events happened (``index`` order). Every
client operation is two events by the same ``process``: an ``invoke`` written *before* the request is sent, then
exactly one completion written *after* the answer (or the give-up) is known::

    {"index": 17, "time": 3.2051, "process": 4, "type": "invoke", "f": "enqueue", "queue": "q0",
     "value": {"body": "4-12", "key": "4-12"}, "node": "n2", "error": null}
    {"index": 19, "time": 3.2310, "process": 4, "type": "ok", "f": "enqueue", "queue": "q0",
     "value": {"body": "4-12", "key": "4-12", "message_id": "01J..."}, "node": "n2", "error": null}

Fields (every line carries all of them; ``null`` where they do not apply):

``index`` (int)
    Global order, 0, 1, 2, ... strictly increasing. The writer assigns index and time under one lock, so index
    order is real-time order: an event with a lower index happened first. Checkers order by ``index``.
``time`` (float)
    Seconds since the recorder started, from a monotonic clock. Used for durations (availability) only.
``process`` (int or ``"nemesis"``)
    The client that did the operation. A process runs one operation at a time: after its invoke, its next event
    is that operation's completion. A process may start a new operation after any completion, ``info`` included.
``type``
    ``"invoke"``; or a completion: ``"ok"`` (it definitely happened, with the result in ``value``), ``"fail"``
    (it definitely did not happen: a 4xx, or a 503 whose problem says nothing was applied) or ``"info"`` (unknown:
    it may or may not have happened, e.g. a timeout, a dropped connection or a 503 ``outcome_unknown``).
    A process's last invoke may lack a completion (the history was cut); readers treat that as ``info``.
``f`` (str)
    What the operation is: ``"enqueue"``, ``"receive"``, ``"ack"``, ``"nack"``, ``"extend"``, ``"create-queue"``,
    ``"drain"``, ... Completions repeat the invoke's ``f``. Nemesis events use ``"start-fault"``/``"stop-fault"``.
``queue`` (str or null)
    The queue the operation is about (null for nemesis events).
``value``
    The operation's argument on the invoke and its result on an ``ok`` completion (per ``f``, below). On
    ``fail``/``info`` completions it may repeat the invoke's value or be null; checkers read arguments from the
    invoke and results from the ``ok`` completion only.
``node`` (str or null)
    The node id (or URL) the request was sent to; null if none (nemesis).
``error`` (str or null)
    On ``fail``/``info``: a short reason (``"timeout"``, ``"503 outcome_unknown"``, ``"409 ..."``).

Values per ``f``:

``enqueue``
    invoke ``{"body": str, "key": str | null}`` (``key`` is the idempotency key; other request fields such as
    ``"delay_s"`` may be added); ok ``{"body", "key",
    "message_id": str}`` (``"duplicate": bool`` may be added). Bodies identify messages: a workload gives each
    logical message its own body and reuses it (with the same key) only when retrying that message.
``receive``
    invoke ``{"max_messages": int}`` (default 1; other request fields may be added) or null; ok: a list of
    ``{"message_id": str, "body": str, "receipt": str, "delivery_count": int}`` (possibly empty).
``ack`` (also ``nack``, ``extend``)
    invoke ``{"receipts": [str, ...]}``; ok ``{"receipts": [...], "outcomes": [str, ...]}``, outcomes in
    receipt order (``"acked"``, ``"stale"``, ...). An outcome may also be ``{"receipt", "outcome"}``.
``drain``
    The final read-out of a queue after healing: invoke null; ok a list of every message read (and deleted) at the
    end, shaped like receive's list (``receipt`` may be null). There may be one drain per queue.

Nemesis events are single lines, not invoke/complete pairs: ``{"process": "nemesis", "type": "info", "f":
"start-fault" | "stop-fault", "value": description, "queue": null, "node": null, "error": null}``. The description
is a string or an object; an object with an ``"id"`` pairs a stop with the start of the same id (see
:func:`fault_windows`).
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Literal, TypeAlias, cast

Json: TypeAlias = bool | int | float | str | list["Json"] | dict[str, "Json"] | None
EventType: TypeAlias = Literal["invoke", "ok", "fail", "info"]
Process: TypeAlias = int | str

NEMESIS = "nemesis"
START_FAULT = "start-fault"
STOP_FAULT = "stop-fault"
EVENT_TYPES: frozenset[str] = frozenset({"invoke", "ok", "fail", "info"})
COMPLETION_TYPES: frozenset[str] = frozenset({"ok", "fail", "info"})


class HistoryError(ValueError):
    """The history is malformed: a checker cannot give a meaningful answer about it."""


@dataclass(frozen=True)
class Event:
    """One line of a history."""

    index: int
    time: float
    process: Process
    type: EventType
    f: str
    queue: str | None = None
    value: Json = None
    node: str | None = None
    error: str | None = None

    @property
    def is_nemesis(self) -> bool:
        return self.process == NEMESIS

    def to_json(self) -> dict[str, Json]:
        return {
            "index": self.index,
            "time": self.time,
            "process": self.process,
            "type": self.type,
            "f": self.f,
            "queue": self.queue,
            "value": self.value,
            "node": self.node,
            "error": self.error,
        }

    @staticmethod
    def from_json(raw: Json) -> Event:
        if not isinstance(raw, dict):
            raise HistoryError(f"an event must be a JSON object, not {raw!r}")
        try:
            index, t, process, etype, f = raw["index"], raw["time"], raw["process"], raw["type"], raw["f"]
        except KeyError as e:
            raise HistoryError(f"event {raw!r} lacks the field {e.args[0]!r}") from None
        if not isinstance(index, int) or isinstance(index, bool):
            raise HistoryError(f"index must be an int: {raw!r}")
        if not isinstance(t, int | float) or isinstance(t, bool):
            raise HistoryError(f"time must be a number: {raw!r}")
        if not (isinstance(process, int) and not isinstance(process, bool)) and process != NEMESIS:
            raise HistoryError(f"process must be an int or 'nemesis': {raw!r}")
        if etype not in EVENT_TYPES:
            raise HistoryError(f"type must be one of {sorted(EVENT_TYPES)}: {raw!r}")
        if not isinstance(f, str):
            raise HistoryError(f"f must be a string: {raw!r}")
        queue, node, error = raw.get("queue"), raw.get("node"), raw.get("error")
        for name, v in (("queue", queue), ("node", node), ("error", error)):
            if v is not None and not isinstance(v, str):
                raise HistoryError(f"{name} must be a string or null: {raw!r}")
        return Event(
            index=index,
            time=float(t),
            process=process,
            type=cast(EventType, etype),
            f=f,
            queue=cast("str | None", queue),
            value=raw.get("value"),
            node=cast("str | None", node),
            error=cast("str | None", error),
        )


# ---------------------------------------------------------------------------------------------------------------
# Writing and reading


class HistoryWriter:
    """Records events: assigns ``index`` and ``time`` under a lock, keeps them in memory, appends them to a file.

    Thread-safe; every line is flushed as it is written, so a crash of the recorder loses at most a torn last line.
    The file must be new or empty. ``at=`` overrides the clock (for hand-made histories in tests).
    """

    def __init__(self, path: Path | str | None = None, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._start = clock()
        self._lock = threading.Lock()
        self._next = 0
        self._last_time = 0.0
        self._file: IO[str] | None = None
        if path is not None:
            if Path(path).exists() and Path(path).stat().st_size > 0:
                raise HistoryError(f"{path} already holds a history: its indices would repeat")
            self._file = open(path, "a", encoding="utf-8")  # noqa: SIM115
        self.events: list[Event] = []

    def _append(
        self,
        process: Process,
        etype: EventType,
        f: str,
        *,
        queue: str | None,
        value: Json,
        node: str | None,
        error: str | None,
        at: float | None,
    ) -> Event:
        with self._lock:
            t = self._clock() - self._start if at is None else at
            t = max(t, self._last_time)  # time never runs backwards along index order
            event = Event(self._next, t, process, etype, f, queue, value, node, error)
            self._next += 1
            self._last_time = t
            self.events.append(event)
            if self._file is not None:
                self._file.write(json.dumps(event.to_json(), separators=(",", ":")) + "\n")
                self._file.flush()
            return event

    def invoke(
        self,
        process: int,
        f: str,
        queue: str | None,
        value: Json = None,
        *,
        node: str | None = None,
        at: float | None = None,
    ) -> Event:
        return self._append(process, "invoke", f, queue=queue, value=value, node=node, error=None, at=at)

    def complete(
        self,
        invoke: Event,
        etype: Literal["ok", "fail", "info"],
        value: Json = None,
        *,
        error: str | None = None,
        node: str | None = None,
        at: float | None = None,
    ) -> Event:
        """The completion of ``invoke``; ``node`` defaults to the invoke's (set it when a redirect moved it)."""
        if invoke.type != "invoke":
            raise HistoryError(f"complete() needs an invoke event, got {invoke!r}")
        return self._append(
            invoke.process,
            etype,
            invoke.f,
            queue=invoke.queue,
            value=value,
            node=node or invoke.node,
            error=error,
            at=at,
        )

    def ok(self, invoke: Event, value: Json = None, *, node: str | None = None, at: float | None = None) -> Event:
        return self.complete(invoke, "ok", value, node=node, at=at)

    def fail(self, invoke: Event, error: str, *, value: Json = None, at: float | None = None) -> Event:
        return self.complete(invoke, "fail", value, error=error, at=at)

    def info(self, invoke: Event, error: str, *, value: Json = None, at: float | None = None) -> Event:
        return self.complete(invoke, "info", value, error=error, at=at)

    def nemesis(self, f: Literal["start-fault", "stop-fault"], description: Json, *, at: float | None = None) -> Event:
        return self._append(NEMESIS, "info", f, queue=None, value=description, node=None, error=None, at=at)

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None

    def __enter__(self) -> HistoryWriter:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def write_history(path: Path | str, events: Iterable[Event]) -> None:
    """Writes ``events`` as a whole file (replacing it)."""
    with open(path, "w", encoding="utf-8") as out:
        for event in events:
            out.write(json.dumps(event.to_json(), separators=(",", ":")) + "\n")


def parse_history(lines: Iterable[str], *, tolerate_torn_tail: bool = True) -> list[Event]:
    """Parses JSON lines (blank lines skipped) and checks indices are unique; returns events in index order.

    With ``tolerate_torn_tail``, an unparsable *last* line (the recorder died mid-write) is dropped.
    """
    raw_lines = [(n, line) for n, line in enumerate(lines, 1) if line.strip()]
    events: list[Event] = []
    for pos, (n, line) in enumerate(raw_lines):
        try:
            raw = json.loads(line)
        except json.JSONDecodeError as e:
            if tolerate_torn_tail and pos == len(raw_lines) - 1:
                break
            raise HistoryError(f"line {n}: not JSON ({e})") from None
        events.append(Event.from_json(raw))
    events.sort(key=lambda e: e.index)
    for a, b in itertools.pairwise(events):
        if a.index == b.index:
            raise HistoryError(f"index {a.index} appears twice")
    return events


def read_history(path: Path | str, *, tolerate_torn_tail: bool = True) -> list[Event]:
    with open(path, encoding="utf-8") as f:
        return parse_history(f, tolerate_torn_tail=tolerate_torn_tail)


# ---------------------------------------------------------------------------------------------------------------
# Operations: invokes paired with their completions


@dataclass(frozen=True)
class Operation:
    """A client operation: its invoke and its completion (None if the history ended first: treated as info)."""

    invoke: Event
    completion: Event | None

    @property
    def process(self) -> Process:
        return self.invoke.process

    @property
    def f(self) -> str:
        return self.invoke.f

    @property
    def queue(self) -> str | None:
        return self.invoke.queue

    @property
    def type(self) -> Literal["ok", "fail", "info"]:
        if self.completion is None:
            return "info"
        return cast(Literal["ok", "fail", "info"], self.completion.type)

    @property
    def ok(self) -> bool:
        return self.type == "ok"

    @property
    def result(self) -> Json:
        """The ok completion's value (None unless ok)."""
        return self.completion.value if self.completion is not None and self.type == "ok" else None

    @property
    def start(self) -> int:
        return self.invoke.index

    @property
    def end(self) -> int | None:
        """The completion's index; None for an operation with an unknown outcome (info or no completion)."""
        return self.completion.index if self.completion is not None and self.type != "info" else None

    def describe(self) -> str:
        end = "?" if self.completion is None else f"{self.completion.index} {self.type}"
        return f"process {self.process} {self.f} {self.queue} [{self.invoke.index}..{end}]"


def client_events(events: Iterable[Event]) -> list[Event]:
    return [e for e in events if not e.is_nemesis]


def nemesis_events(events: Iterable[Event]) -> list[Event]:
    return [e for e in events if e.is_nemesis]


def pair_operations(events: Sequence[Event]) -> list[Operation]:
    """Pairs every client invoke with its process's next event, which must be its completion.

    Raises :class:`HistoryError` for a completion with no open invoke, a second invoke while one is open, or a
    completion whose ``f`` differs from its invoke's. Operations come back in invoke order.
    """
    open_ops: dict[Process, Event] = {}
    done: list[Operation] = []
    for e in sorted(events, key=lambda ev: ev.index):
        if e.is_nemesis:
            continue
        if e.type == "invoke":
            if e.process in open_ops:
                raise HistoryError(
                    f"process {e.process} invoked {e.f} at index {e.index} while its {open_ops[e.process].f} "
                    f"from index {open_ops[e.process].index} had not completed"
                )
            open_ops[e.process] = e
            continue
        inv = open_ops.pop(e.process, None)
        if inv is None:
            raise HistoryError(f"completion at index {e.index} (process {e.process}) has no invoke")
        if inv.f != e.f:
            raise HistoryError(f"completion at index {e.index} is {e.f} but its invoke at {inv.index} is {inv.f}")
        done.append(Operation(inv, e))
    done.extend(Operation(inv, None) for inv in open_ops.values())
    done.sort(key=lambda op: op.invoke.index)
    return done


def as_operations(history: Sequence[Event] | Sequence[Operation]) -> list[Operation]:
    """Accepts either raw events or already-paired operations."""
    if not history:
        return []
    if isinstance(history[0], Operation):
        return list(cast(Sequence[Operation], history))
    return pair_operations(cast(Sequence[Event], history))


@dataclass(frozen=True)
class FaultWindow:
    """A start-fault and the stop-fault that ended it (None: never stopped)."""

    start: Event
    stop: Event | None

    @property
    def description(self) -> Json:
        return self.start.value


def _fault_id(value: Json) -> Json:
    return value.get("id") if isinstance(value, dict) else None


def fault_windows(events: Iterable[Event]) -> list[FaultWindow]:
    """Pairs nemesis start-fault and stop-fault events.

    A stop whose description is an object with an ``"id"`` ends the open start with the same id; any other stop
    ends the oldest open start. A stop with nothing open to end raises :class:`HistoryError`.
    """
    open_starts: list[Event] = []
    windows: dict[int, FaultWindow] = {}
    for e in sorted(nemesis_events(events), key=lambda ev: ev.index):
        if e.f == START_FAULT:
            open_starts.append(e)
            windows[e.index] = FaultWindow(e, None)
        elif e.f == STOP_FAULT:
            fid = _fault_id(e.value)
            match = next((s for s in open_starts if fid is not None and _fault_id(s.value) == fid), None)
            if match is None:
                if not open_starts:
                    raise HistoryError(f"stop-fault at index {e.index} ends no open fault")
                match = open_starts[0]
            open_starts.remove(match)
            windows[match.index] = FaultWindow(match, e)
    return [windows[k] for k in sorted(windows)]


# ---------------------------------------------------------------------------------------------------------------
# Typed views of operation values


@dataclass(frozen=True)
class EnqueueValue:
    body: str
    key: str | None
    message_id: str | None  # set on ok


@dataclass(frozen=True)
class Delivery:
    """One message as a receive or a drain returned it."""

    message_id: str
    body: str
    receipt: str | None
    delivery_count: int | None


def _obj(value: Json, what: str) -> dict[str, Json]:
    if not isinstance(value, dict):
        raise HistoryError(f"{what}: expected an object, got {value!r}")
    return value


def _opt_str(d: Mapping[str, Json], name: str, what: str) -> str | None:
    v = d.get(name)
    if v is not None and not isinstance(v, str):
        raise HistoryError(f"{what}: {name} must be a string or null, got {v!r}")
    return v


def enqueue_value(op: Operation) -> EnqueueValue:
    """Body and key from the invoke; message_id from the ok completion."""
    what = op.describe()
    inv = _obj(op.invoke.value, what)
    body = inv.get("body")
    if not isinstance(body, str):
        raise HistoryError(f"{what}: enqueue body must be a string, got {body!r}")
    key = _opt_str(inv, "key", what)
    message_id = None
    if op.ok:
        message_id = _opt_str(_obj(op.result, what), "message_id", what)
    return EnqueueValue(body, key, message_id)


def deliveries(op: Operation) -> list[Delivery]:
    """The messages an ok receive or drain returned ([] unless ok)."""
    if not op.ok:
        return []
    what = op.describe()
    items = op.result
    if not isinstance(items, list):
        raise HistoryError(f"{what}: expected a list of messages, got {items!r}")
    out: list[Delivery] = []
    for item in items:
        d = _obj(item, what)
        mid, body = d.get("message_id"), d.get("body")
        if not isinstance(mid, str) or not isinstance(body, str):
            raise HistoryError(f"{what}: a message needs string message_id and body, got {d!r}")
        count = d.get("delivery_count")
        if count is not None and (not isinstance(count, int) or isinstance(count, bool)):
            raise HistoryError(f"{what}: delivery_count must be an int, got {count!r}")
        out.append(Delivery(mid, body, _opt_str(d, "receipt", what), count))
    return out


def receive_max_messages(op: Operation) -> int:
    v = op.invoke.value
    if isinstance(v, dict):
        m = v.get("max_messages", 1)
        if isinstance(m, int) and not isinstance(m, bool) and m >= 1:
            return m
        raise HistoryError(f"{op.describe()}: max_messages must be a positive int, got {m!r}")
    return 1


def settle_receipts(op: Operation) -> list[str]:
    """The receipts an ack/nack/extend invoke named."""
    what = op.describe()
    receipts = _obj(op.invoke.value, what).get("receipts")
    if not isinstance(receipts, list) or not all(isinstance(r, str) for r in receipts):
        raise HistoryError(f"{what}: receipts must be a list of strings, got {receipts!r}")
    return cast(list[str], receipts)


def settle_outcomes(op: Operation) -> list[tuple[str, str]]:
    """(receipt, outcome) pairs of an ok ack/nack/extend ([] unless ok)."""
    if not op.ok:
        return []
    what = op.describe()
    receipts = settle_receipts(op)
    outcomes = _obj(op.result, what).get("outcomes")
    if not isinstance(outcomes, list) or len(outcomes) != len(receipts):
        raise HistoryError(f"{what}: outcomes must be a list with one entry per receipt, got {outcomes!r}")
    out: list[tuple[str, str]] = []
    for receipt, item in zip(receipts, outcomes, strict=True):
        if isinstance(item, dict):
            outcome, named = item.get("outcome"), item.get("receipt", receipt)
            if named != receipt:
                raise HistoryError(f"{what}: outcome for {named!r} is out of receipt order")
        else:
            outcome = item
        if not isinstance(outcome, str):
            raise HistoryError(f"{what}: an outcome must be a string, got {item!r}")
        out.append((receipt, outcome))
    return out


# ---------------------------------------------------------------------------------------------------------------
# Results as JSON


def to_jsonable(obj: object) -> Json:
    """Dataclasses, mappings, sets (sorted), tuples and lists, recursively, as JSON-compatible values."""
    if obj is None or isinstance(obj, bool | int | float | str):
        return obj
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_jsonable(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, Mapping):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, set | frozenset):
        return [to_jsonable(v) for v in sorted(obj, key=repr)]
    if isinstance(obj, list | tuple):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    return repr(obj)


def iter_ok(ops: Iterable[Operation], f: str) -> Iterator[Operation]:
    return (op for op in ops if op.f == f and op.ok)
