"""The verdict: every checker's result in one report, and one line per run for the results table.

:func:`build_report` returns ``{checker name: result as a dict, ..., "valid": merged, "summary": table row}``.
Validity merges as in Jepsen: any ``False`` makes the run invalid, otherwise any ``"unknown"`` (a linearizability
search that ran out of budget, a history outside the model) makes it unknown, otherwise it is valid. A run with no
checker results is ``"unknown"``: nothing was checked.

The table row: ``operations`` (client operations invoked), ``lost``, ``duplicated``, ``unexpected`` (from the total
queue checker; None if it did not run), ``failover_p50_s``/``failover_p99_s`` (fault start to first ok write, from
the availability checker, all-node faults left out: no write can succeed during those), ``recovery_s`` (each fault's
goodput recovery time in order, :mod:`chaos.goodput`: ``"never"`` if the goodput never came back, ``"no baseline"``
if it could not be measured) and ``verdict`` (``"valid"``, ``"INVALID"`` or ``"unknown"``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Literal, Protocol

from chaos.check_availability import AvailabilityResult
from chaos.check_linear import Validity, merge_validity
from chaos.check_queue import QueueResult
from chaos.goodput import describe
from chaos.history import Event, Json, to_jsonable

RESERVED = frozenset({"valid", "summary"})
TABLE_COLUMNS = (
    *("run", "operations", "lost", "duplicated", "unexpected"),
    *("failover_p50_s", "failover_p99_s", "recovery_s", "verdict"),
)


class CheckResult(Protocol):
    @property
    def valid(self) -> Validity: ...


def verdict_word(valid: Validity) -> Literal["valid", "INVALID", "unknown"]:
    if valid is True:
        return "valid"
    return "INVALID" if valid is False else "unknown"


def count_operations(history: Sequence[Event]) -> int:
    return sum(1 for e in history if not e.is_nemesis and e.type == "invoke")


def table_row(results: Mapping[str, CheckResult], *, operations: int | None, run: str = "") -> dict[str, Json]:
    queue = next((r for r in results.values() if isinstance(r, QueueResult)), None)
    avail = next((r for r in results.values() if isinstance(r, AvailabilityResult)), None)
    valid = merge_validity([r.valid for r in results.values()]) if results else "unknown"
    return {
        "run": run,
        "operations": operations,
        "lost": queue.lost_count if queue else None,
        "duplicated": queue.duplicated_count if queue else None,
        "unexpected": queue.unexpected_count if queue else None,
        "failover_p50_s": avail.failover.p50 if avail else None,
        "failover_p99_s": avail.failover.p99 if avail else None,
        "recovery_s": recovery_cell(avail),
        "verdict": verdict_word(valid),
    }


def recovery_cell(avail: AvailabilityResult | None) -> str | None:
    """Each fault's goodput recovery, in order (``"0.5 s, 2 s, never"``); None without a goodput measurement."""
    if avail is None or avail.goodput is None:
        return None
    return ", ".join(describe(r) for r in avail.goodput.recoveries) or None


def build_report(
    results: Mapping[str, CheckResult],
    *,
    history: Sequence[Event] | None = None,
    operations: int | None = None,
    run: str = "",
) -> dict[str, Json]:
    """``results`` maps a checker name (e.g. ``"queue"``, ``"linear"``) to its result dataclass."""
    clash = RESERVED & set(results)
    if clash:
        raise ValueError(f"checker names {sorted(clash)} are reserved")
    if operations is None and history is not None:
        operations = count_operations(history)
    report: dict[str, Json] = {name: to_jsonable(result) for name, result in results.items()}
    report["valid"] = merge_validity([r.valid for r in results.values()]) if results else "unknown"
    report["summary"] = table_row(results, operations=operations, run=run)
    return report


def _cell(value: Json) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


def format_table(rows: Sequence[Mapping[str, Json]]) -> str:
    """Summary rows as a Markdown table."""
    lines = ["| " + " | ".join(TABLE_COLUMNS) + " |", "|" + "---|" * len(TABLE_COLUMNS)]
    lines += ["| " + " | ".join(_cell(row.get(c)) for c in TABLE_COLUMNS) + " |" for row in rows]
    return "\n".join(lines)
