"""Non-vacuity: the run actually tested something, so a pass means something.

Each rule that fails adds a line to ``problems``; ``valid`` iff there are none.

- **faults fired** (``require_fault``): at least one ``start-fault`` with a matching ``stop-fault``
  (:func:`chaos.history.fault_windows`); and every fault was stopped (an unhealed fault means the post-healing
  checks - drain, replica digests - ran on a broken cluster).
- **enough work**: at least ``min_ok_ops`` ok client operations (the drain excluded) and, per ``f``, at least
  ``min_ok_by_f[f]`` ok operations (e.g. ``{"enqueue": 50, "ack": 50}``).
- **a final drain** (``require_drain``): at least one ok ``drain``; without it lost messages cannot be seen.
- **leaders changed** (``min_leader_changes``): ``leaders`` is the leader id observed over time (``None`` = no
  leader known at that moment). A change is a known leader followed, after any ``None`` gap, by a different known
  leader: ``[a, a, None, b, a]`` has 2 changes; ``[a, None, a]`` has 0.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from chaos.history import Event, HistoryError, as_operations, fault_windows


@dataclass(frozen=True)
class VacuityResult:
    valid: bool
    problems: list[str]
    faults: int
    unhealed_faults: int
    ok_ops: int
    ok_by_f: dict[str, int]
    drains: int
    leader_changes: int | None


def leader_changes(leaders: Sequence[str | None]) -> int:
    changes = 0
    last: str | None = None
    for leader in leaders:
        if leader is None:
            continue
        if last is not None and leader != last:
            changes += 1
        last = leader
    return changes


def check_vacuity(
    history: Sequence[Event],
    *,
    min_ok_ops: int = 1,
    min_ok_by_f: Mapping[str, int] | None = None,
    require_fault: bool = True,
    require_drain: bool = True,
    leaders: Sequence[str | None] | None = None,
    min_leader_changes: int = 0,
) -> VacuityResult:
    problems: list[str] = []
    try:
        windows = fault_windows(history)
    except HistoryError as e:
        windows = []
        problems.append(f"nemesis events do not pair up: {e}")
    healed = [w for w in windows if w.stop is not None]
    unhealed = [w for w in windows if w.stop is None]
    if require_fault and not healed:
        problems.append("no fault both started and stopped")
    if require_fault and unhealed:
        problems.append(
            f"{len(unhealed)} fault(s) never stopped: " + ", ".join(repr(w.start.value) for w in unhealed[:3])
        )

    ops = as_operations(history)
    ok_by_f = Counter(op.f for op in ops if op.ok)
    drains = ok_by_f.get("drain", 0)
    ok_ops = sum(n for f, n in ok_by_f.items() if f != "drain")
    if ok_ops < min_ok_ops:
        problems.append(f"only {ok_ops} ok operations (want at least {min_ok_ops})")
    for f, want in sorted((min_ok_by_f or {}).items()):
        if ok_by_f.get(f, 0) < want:
            problems.append(f"only {ok_by_f.get(f, 0)} ok {f} operations (want at least {want})")
    if require_drain and not drains:
        problems.append("no ok drain: lost messages could not be seen")

    changes = None if leaders is None else leader_changes(leaders)
    if min_leader_changes > 0:
        if changes is None:
            problems.append(f"no leader observations (want at least {min_leader_changes} leader changes)")
        elif changes < min_leader_changes:
            problems.append(f"only {changes} leader changes (want at least {min_leader_changes})")

    return VacuityResult(
        valid=not problems,
        problems=problems,
        faults=len(healed),
        unhealed_faults=len(unhealed),
        ok_ops=ok_ops,
        ok_by_f=dict(sorted(ok_by_f.items())),
        drains=drains,
        leader_changes=changes,
    )
