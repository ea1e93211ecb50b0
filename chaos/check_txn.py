"""Consume-transform-produce, exactly once: every input ends transformed exactly once, or untouched in its queue.

Reads the ops of :mod:`chaos.workload_txn` only (``f`` = ``txn-setup``, ``txn``, ``txn-get``, ``txn-drain``); the
other checkers never read those. Inputs are identified by body (``in-k``), outputs by body too (``out-in-k``).

- **inputs**: the bodies of ok ``txn-setup`` ops. Bodies only attempted (no ok setup) *may* exist: they are never
  missing, but their outputs are not orphans either.
- **outputs**: the bodies the ok ``txn-drain`` of the target queue read; **left**: the bodies the ok ``txn-drain``
  of the source queue read (the inputs no transformer consumed before the end).

The rule: **an input must end either transformed exactly once (its output drained once from the target, the input
gone from the source), or untransformed (still in the source, no output); never both, never twice, never neither.**
Leaving inputs in the source is allowed (the run may end, or its deadline pass, before the transformers got to
them; they are counted as ``untransformed``): a transaction that did not commit must leave its input there, which
is what the rule checks. Violations, each listed:

- ``missing``: an input neither transformed nor left in the source (its ack applied without its enqueue, or the
  input itself was lost);
- ``both``: an input left in the source *and* transformed (the enqueue applied without the ack);
- ``duplicated_outputs``: an output drained more than once (a transaction applied twice, or two committed for one
  input); ``duplicated_inputs``: an input left in the source more than once;
- ``orphan_outputs``: a drained output (or a body left in the source) that no input explains;
- ``ok_missing``: a transaction answered ok (or read as committed by ``txn-get``) whose output is not in the target;
- ``output_id_mismatch``: ok answers for one input that name different output message ids, or one the drained
  output does not carry (a duplicate answer must repeat the original outcome);
- ``multi_committed``: an input committed under more than one transaction id (the id is derived from the input's
  message id, which a redelivery keeps);
- ``bad_ack_outcomes``: an ok transaction whose ack did not answer ``acked`` (a committed ack deleted the input).

Besides: the drains of both queues must be complete (an ok ``txn-drain`` of each), and the run must be non-vacuous:
at least ``min_committed`` distinct transactions answered ok. Each broken rule is a line in ``problems``; ``valid``
iff there is none.

Counts: ``inputs``, ``committed`` (distinct transaction ids answered ok), ``duplicates_answered`` (ok answers with
``"duplicate": true``: a retry learning that its first attempt had committed), ``aborted`` (``409
transaction_aborted``: a stale receipt), ``conflicts`` (``409 transaction_conflict``), ``unknown_outcomes`` (info),
``other_failures``, ``transformed``, ``untransformed``, ``missing_count``, ``duplicated_count``.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

from chaos.history import Event, HistoryError, Json, Operation, as_operations, deliveries

SOURCE = "tsrc"
TARGET = "tdst"
#: the ``f`` of every op this checker reads
TXN_FS = frozenset({"txn-setup", "txn-receive", "txn", "txn-get", "txn-drain"})


@dataclass(frozen=True)
class TxnResult:
    valid: bool
    problems: list[str]
    inputs: int
    committed: int
    transactions: int
    duplicates_answered: int
    aborted: int
    conflicts: int
    unknown_outcomes: int
    other_failures: int
    transformed: int
    untransformed: int
    missing_count: int
    duplicated_count: int
    missing: list[str] = field(default_factory=list)
    both: list[str] = field(default_factory=list)
    #: output body -> how many times it was drained (only those drained more than once)
    duplicated_outputs: dict[str, int] = field(default_factory=dict)
    duplicated_inputs: dict[str, int] = field(default_factory=dict)
    orphan_outputs: list[str] = field(default_factory=list)
    ok_missing: list[str] = field(default_factory=list)
    #: input body -> the output message ids ok answers named, and the drained one(s)
    output_id_mismatch: dict[str, dict[str, list[str]]] = field(default_factory=dict)
    #: input body -> the transaction ids committed for it (only those with more than one)
    multi_committed: dict[str, list[str]] = field(default_factory=dict)
    bad_ack_outcomes: dict[str, list[str]] = field(default_factory=dict)


def _obj(op: Operation, value: Json) -> dict[str, Json]:
    if not isinstance(value, dict):
        raise HistoryError(f"{op.describe()}: expected an object, got {value!r}")
    return value


def _str(op: Operation, d: dict[str, Json], name: str) -> str:
    v = d.get(name)
    if not isinstance(v, str):
        raise HistoryError(f"{op.describe()}: {name} must be a string, got {v!r}")
    return v


def _strs(op: Operation, d: dict[str, Json], name: str) -> list[str]:
    v = d.get(name)
    if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
        raise HistoryError(f"{op.describe()}: {name} must be a list of strings, got {v!r}")
    return [str(x) for x in v]


def _listed(items: Sequence[str], limit: int = 5) -> str:
    return ", ".join(items[:limit]) + (f" ... ({len(items)} in all)" if len(items) > limit else "")


def check_txn(
    history: Sequence[Event] | Sequence[Operation],
    *,
    source: str = SOURCE,
    target: str = TARGET,
    min_committed: int = 1,
) -> TxnResult:
    ops = [op for op in as_operations(history) if op.f in TXN_FS]
    inputs: set[str] = set()
    attempted: set[str] = set()
    for op in ops:
        if op.f != "txn-setup":
            continue
        bodies = _strs(op, _obj(op, op.invoke.value), "bodies")
        attempted.update(bodies)
        if op.ok:
            inputs.update(bodies)
    maybe_inputs = attempted - inputs

    tid_input: dict[str, str] = {}
    committed_ids: set[str] = set()
    committed_by_input: dict[str, set[str]] = defaultdict(set)
    ok_output_ids: dict[str, set[str]] = defaultdict(set)
    bad_acks: dict[str, list[str]] = {}
    transactions = duplicates = aborted = conflicts = unknown = other = 0
    for op in ops:
        if op.f != "txn":
            continue
        inv = _obj(op, op.invoke.value)
        tid, input_ = _str(op, inv, "transaction_id"), _str(op, inv, "input")
        tid_input[tid] = input_
        transactions += 1
        if op.ok:
            result = _obj(op, op.result)
            committed_ids.add(tid)
            committed_by_input[input_].add(tid)
            duplicates += result.get("duplicate") is True
            mid = result.get("output_message_id")
            if isinstance(mid, str):
                ok_output_ids[input_].add(mid)
            acks = result.get("ack_outcomes")
            if isinstance(acks, list) and acks != ["acked"]:
                bad_acks[f"{tid} ({op.describe()})"] = [str(a) for a in acks]
        elif op.type == "info":
            unknown += 1
        else:
            error = op.completion.error if op.completion is not None else None
            if error is not None and "transaction_aborted" in error:
                aborted += 1
            elif error is not None and "transaction_conflict" in error:
                conflicts += 1
            else:
                other += 1
    for op in ops:  # a transaction another transformer committed, read after a conflict
        if op.f == "txn-get" and op.ok:
            got = _obj(op, op.result)
            tid = _str(op, got, "transaction_id")
            if got.get("status") == "committed" and tid in tid_input:
                committed_by_input[tid_input[tid]].add(tid)

    problems: list[str] = []
    drained: dict[str, list[tuple[str, str]]] = {}
    for op in ops:
        if op.f == "txn-drain" and op.ok and op.queue in (source, target) and op.queue not in drained:
            drained[op.queue] = [(d.body, d.message_id) for d in deliveries(op)]
    for queue in (source, target):
        if queue not in drained:
            problems.append(f"no complete drain of {queue}: the end state is unknown")
    out_counts = Counter(body for body, _ in drained.get(target, []))
    out_ids: dict[str, set[str]] = defaultdict(set)
    for body, mid in drained.get(target, []):
        out_ids[body].add(mid)
    left = Counter(body for body, _ in drained.get(source, []))

    known = inputs | maybe_inputs
    expected_outputs = {"out-" + i: i for i in known}
    orphans = sorted({b for b in out_counts if b not in expected_outputs} | {b for b in left if b not in known})
    duplicated_outputs = {b: n for b, n in sorted(out_counts.items()) if n > 1}
    duplicated_inputs = {b: n for b, n in sorted(left.items()) if n > 1}
    transformed = {expected_outputs[b] for b in out_counts if b in expected_outputs}
    both = sorted(i for i in known if left[i] and i in transformed)
    missing = sorted(i for i in inputs if not left[i] and i not in transformed) if len(drained) == 2 else []
    ok_missing = sorted(i for i in committed_by_input if "out-" + i not in out_counts) if target in drained else []
    mismatch: dict[str, dict[str, list[str]]] = {}
    for i, ids in sorted(ok_output_ids.items()):
        seen = out_ids.get("out-" + i, set())
        if len(ids) > 1 or (seen and not seen <= ids):
            mismatch[i] = {"answered": sorted(ids), "drained": sorted(seen)}
    multi = {i: sorted(tids) for i, tids in sorted(committed_by_input.items()) if len(tids) > 1}

    for name, items in (
        ("missing (neither transformed nor left in the source)", missing),
        ("both left in the source and transformed", both),
        ("duplicated outputs", list(duplicated_outputs)),
        ("inputs left in the source more than once", list(duplicated_inputs)),
        ("outputs (or source messages) with no input", orphans),
        ("committed transactions whose output is missing", ok_missing),
        ("output message ids that do not match the committed answers", list(mismatch)),
        ("inputs committed under more than one transaction id", list(multi)),
        ("committed transactions whose ack did not answer acked", list(bad_acks)),
    ):
        if items:
            problems.append(f"{len(items)} {name}: {_listed(items)}")
    if len(committed_ids) < min_committed:
        problems.append(f"vacuous: {len(committed_ids)} transactions committed (want at least {min_committed})")

    return TxnResult(
        valid=not problems,
        problems=problems,
        inputs=len(inputs),
        committed=len(committed_ids),
        transactions=transactions,
        duplicates_answered=duplicates,
        aborted=aborted,
        conflicts=conflicts,
        unknown_outcomes=unknown,
        other_failures=other,
        transformed=len(transformed),
        untransformed=sum(1 for i in known if left[i] and i not in transformed),
        missing_count=len(missing),
        duplicated_count=len(duplicated_outputs),
        missing=missing,
        both=both,
        duplicated_outputs=duplicated_outputs,
        duplicated_inputs=duplicated_inputs,
        orphan_outputs=orphans,
        ok_missing=ok_missing,
        output_id_mismatch=mismatch,
        multi_committed=multi,
        bad_ack_outcomes=bad_acks,
    )
