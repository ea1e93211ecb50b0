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
    inputs, attempted = _read_inputs(ops)
    answers = _read_answers(ops)
    drained: dict[str, list[tuple[str, str]]] = {}
    for op in ops:
        if op.f == "txn-drain" and op.ok and op.queue in (source, target) and op.queue not in drained:
            drained[op.queue] = [(d.body, d.message_id) for d in deliveries(op)]
    f = _find(inputs, attempted - inputs, answers, drained, source=source, target=target)
    problems = [f"no complete drain of {q}: the end state is unknown" for q in (source, target) if q not in drained]
    problems.extend(f.problems(answers))
    if len(answers.committed_ids) < min_committed:
        problems.append(f"vacuous: {len(answers.committed_ids)} transactions committed (want at least {min_committed})")
    return TxnResult(
        valid=not problems,
        problems=problems,
        inputs=len(inputs),
        committed=len(answers.committed_ids),
        transactions=answers.transactions,
        duplicates_answered=answers.duplicates,
        aborted=answers.aborted,
        conflicts=answers.conflicts,
        unknown_outcomes=answers.unknown,
        other_failures=answers.other,
        transformed=len(f.transformed),
        untransformed=f.untransformed,
        missing_count=len(f.missing),
        duplicated_count=len(f.duplicated_outputs),
        missing=f.missing,
        both=f.both,
        duplicated_outputs=f.duplicated_outputs,
        duplicated_inputs=f.duplicated_inputs,
        orphan_outputs=f.orphans,
        ok_missing=f.ok_missing,
        output_id_mismatch=f.mismatch,
        multi_committed=f.multi,
        bad_ack_outcomes=answers.bad_acks,
    )


def _read_inputs(ops: Sequence[Operation]) -> tuple[set[str], set[str]]:
    """The inputs (bodies of ok ``txn-setup`` ops), and every body a setup attempted."""
    inputs: set[str] = set()
    attempted: set[str] = set()
    for op in ops:
        if op.f != "txn-setup":
            continue
        bodies = _strs(op, _obj(op, op.invoke.value), "bodies")
        attempted.update(bodies)
        if op.ok:
            inputs.update(bodies)
    return inputs, attempted


@dataclass
class _Answers:
    """What the transactions were answered: the ``txn`` ops, and the ``txn-get`` reads after a conflict."""

    tid_input: dict[str, str] = field(default_factory=dict)
    committed_ids: set[str] = field(default_factory=set)
    committed_by_input: defaultdict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    ok_output_ids: defaultdict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    bad_acks: dict[str, list[str]] = field(default_factory=dict)
    transactions: int = 0
    duplicates: int = 0
    aborted: int = 0
    conflicts: int = 0
    unknown: int = 0
    other: int = 0

    def read_txn(self, op: Operation) -> None:
        inv = _obj(op, op.invoke.value)
        tid, input_ = _str(op, inv, "transaction_id"), _str(op, inv, "input")
        self.tid_input[tid] = input_
        self.transactions += 1
        if op.ok:
            result = _obj(op, op.result)
            self.committed_ids.add(tid)
            self.committed_by_input[input_].add(tid)
            self.duplicates += result.get("duplicate") is True
            mid = result.get("output_message_id")
            if isinstance(mid, str):
                self.ok_output_ids[input_].add(mid)
            acks = result.get("ack_outcomes")
            if isinstance(acks, list) and acks != ["acked"]:
                self.bad_acks[f"{tid} ({op.describe()})"] = [str(a) for a in acks]
        elif op.type == "info":
            self.unknown += 1
        else:
            error = op.completion.error if op.completion is not None else None
            if error is not None and "transaction_aborted" in error:
                self.aborted += 1
            elif error is not None and "transaction_conflict" in error:
                self.conflicts += 1
            else:
                self.other += 1

    def read_get(self, op: Operation) -> None:
        """A transaction another transformer committed, read after a conflict."""
        got = _obj(op, op.result)
        tid = _str(op, got, "transaction_id")
        if got.get("status") == "committed" and tid in self.tid_input:
            self.committed_by_input[self.tid_input[tid]].add(tid)


def _read_answers(ops: Sequence[Operation]) -> _Answers:
    answers = _Answers()
    for op in ops:
        if op.f == "txn":
            answers.read_txn(op)
    for op in ops:
        if op.f == "txn-get" and op.ok:
            answers.read_get(op)
    return answers


@dataclass(frozen=True)
class _Findings:
    """The end state judged against the inputs and the answers (see the module's docstring for each list)."""

    missing: list[str]
    both: list[str]
    duplicated_outputs: dict[str, int]
    duplicated_inputs: dict[str, int]
    orphans: list[str]
    ok_missing: list[str]
    mismatch: dict[str, dict[str, list[str]]]
    multi: dict[str, list[str]]
    transformed: set[str]
    untransformed: int

    def problems(self, answers: _Answers) -> list[str]:
        return [
            f"{len(items)} {name}: {_listed(items)}"
            for name, items in (
                ("missing (neither transformed nor left in the source)", self.missing),
                ("both left in the source and transformed", self.both),
                ("duplicated outputs", list(self.duplicated_outputs)),
                ("inputs left in the source more than once", list(self.duplicated_inputs)),
                ("outputs (or source messages) with no input", self.orphans),
                ("committed transactions whose output is missing", self.ok_missing),
                ("output message ids that do not match the committed answers", list(self.mismatch)),
                ("inputs committed under more than one transaction id", list(self.multi)),
                ("committed transactions whose ack did not answer acked", list(answers.bad_acks)),
            )
            if items
        ]


def _find(
    inputs: set[str],
    maybe_inputs: set[str],
    answers: _Answers,
    drained: dict[str, list[tuple[str, str]]],
    *,
    source: str,
    target: str,
) -> _Findings:
    out_counts = Counter(body for body, _ in drained.get(target, []))
    out_ids: dict[str, set[str]] = defaultdict(set)
    for body, mid in drained.get(target, []):
        out_ids[body].add(mid)
    left = Counter(body for body, _ in drained.get(source, []))
    known = inputs | maybe_inputs
    expected_outputs = {"out-" + i: i for i in known}
    transformed = {expected_outputs[b] for b in out_counts if b in expected_outputs}
    mismatch: dict[str, dict[str, list[str]]] = {}
    for i, ids in sorted(answers.ok_output_ids.items()):
        seen = out_ids.get("out-" + i, set())
        if len(ids) > 1 or (seen and not seen <= ids):
            mismatch[i] = {"answered": sorted(ids), "drained": sorted(seen)}
    by_input = answers.committed_by_input
    return _Findings(
        missing=sorted(i for i in inputs if not left[i] and i not in transformed) if len(drained) == 2 else [],
        both=sorted(i for i in known if left[i] and i in transformed),
        duplicated_outputs={b: n for b, n in sorted(out_counts.items()) if n > 1},
        duplicated_inputs={b: n for b, n in sorted(left.items()) if n > 1},
        orphans=sorted({b for b in out_counts if b not in expected_outputs} | {b for b in left if b not in known}),
        ok_missing=sorted(i for i in by_input if "out-" + i not in out_counts) if target in drained else [],
        mismatch=mismatch,
        multi={i: sorted(tids) for i, tids in sorted(by_input.items()) if len(tids) > 1},
        transformed=transformed,
        untransformed=sum(1 for i in known if left[i] and i not in transformed),
    )
