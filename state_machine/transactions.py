"""Transactions: several enqueues and settles (ack, nack, extend) that apply together or not at all.

Two forms share one record per transaction ID (``J<id>``, see ``keys``):

- ``Transact`` (one-shot): every op is applied on a child store. If any op is rejected, or any receipt settles
  as anything but acked, nacked, extended or dead-lettered, nothing applies and the answer is ``aborted`` with
  reason ``preconditions`` and every failure named; that answer is not recorded (a retry evaluates again). A
  commit is recorded under its ID with the request's fingerprint until ``now + retention_ms``; a retry with the
  same fingerprint gets the recorded outcome (``duplicate``), another fingerprint is a conflict.
- Interactive: ``BeginTxn`` records a pending transaction with a deadline, ``StageTxn`` appends ops (stored
  apart, ``S`` keys: nothing happens to any queue, so staged messages are invisible and uncounted),
  ``CommitTxn`` applies all staged ops exactly like ``Transact`` (preconditions evaluated then) and records
  the decision either way, ``AbortTxn`` records an abort.

Time: a pending transaction whose deadline is at or before the clock is aborted with reason ``timeout``. That is
decided lazily by whatever touches the record (this module's ``load``, reads included) and by a bounded sweep at
the start of every entry (``sweep``, an ordered scan of the ``W`` keys). A timeout is a pure function of the
pending record (no decided index; forgotten at ``deadline + retention``), so it reads the same whichever path
decides it, and whether or not it has been written yet. A decided record is forgotten at its ``due_ms`` by the
same sweep (and ignored by ``load`` from then on); after that the ID is unknown again (clients must not reuse it).
"""

from __future__ import annotations

import msgspec

from state_machine import config as limits
from state_machine.commands import (
    AbortTxn,
    BeginTxn,
    CommitTxn,
    Enqueue,
    StageTxn,
    Transact,
    TxnOp,
)
from state_machine.message_ops import enqueue, settle
from state_machine.records import StageRecord, StoredResult, TxnKind, TxnRecord
from state_machine.results import (
    Enqueued,
    EnqueuedMessage,
    ErrorCode,
    Rejected,
    Result,
    Settled,
    SettleOutcome,
    TxnFailure,
    TxnOutcome,
    TxnStatus,
)
from state_machine.store import Store

#: Settle outcomes that count as success inside a transaction.
SETTLED_OK = frozenset({SettleOutcome.ACKED, SettleOutcome.NACKED, SettleOutcome.EXTENDED, SettleOutcome.DEAD_LETTERED})
_SETTLE_FAILURE_DETAIL = {
    SettleOutcome.STALE: "the delivery this receipt names is over (lease ended, settled, or message gone)",
    SettleOutcome.INVALID: "the receipt is malformed or belongs to another queue",
    SettleOutcome.ALREADY_ACKED: "this delivery was already acked",
}
REASON_TIMEOUT = "timeout"
REASON_ABORTED = "aborted"
REASON_PRECONDITIONS = "preconditions"


# records and outcomes


def outcome(transaction_id: str, rec: TxnRecord, *, duplicate: bool) -> TxnOutcome:
    return TxnOutcome(
        transaction_id=transaction_id,
        status=rec.status,
        decided_index=rec.decided_index,
        results=[_result(r) for r in rec.results],
        failures=[TxnFailure(op, code, detail, field) for op, code, detail, field in rec.failures],
        reason=rec.reason,
        expires_at_ms=rec.due_ms,
        staged_ops=rec.staged_ops,
        duplicate=duplicate,
    )


def _result(stored: StoredResult) -> Result:
    if stored.enqueued is not None:
        return Enqueued([EnqueuedMessage(mid, seq, dup) for mid, seq, dup in stored.enqueued])
    return Settled([SettleOutcome(o) for o in stored.settled or []])


def _stored(result: Enqueued | Settled) -> StoredResult:
    if isinstance(result, Enqueued):
        return StoredResult(enqueued=[(m.message_id, m.seq, m.duplicate) for m in result.messages])
    return StoredResult(settled=[o.value for o in result.outcomes])


def load(store: Store, transaction_id: str) -> TxnRecord | None:
    """The record as of ``store.now_ms``: a pending one past its deadline is aborted (timeout) first, and one
    whose retention ended is deleted and reads as absent. Writes only to ``store``."""
    rec = store.txn(transaction_id)
    if rec is None or rec.due_ms > store.now_ms:
        return rec
    if rec.status == TxnStatus.PENDING:
        return _time_out(store, transaction_id, rec)
    store.delete_txn(transaction_id, rec)
    return None


def _time_out(store: Store, transaction_id: str, rec: TxnRecord) -> TxnRecord | None:
    decided = msgspec.structs.replace(
        rec,
        status=TxnStatus.ABORTED,
        reason=REASON_TIMEOUT,
        decided_index=None,
        due_ms=rec.due_ms + rec.retention_ms,
    )
    store.delete_stages(transaction_id)
    if decided.due_ms <= store.now_ms:  # timed out and past its retention too: forgotten at once
        store.delete_txn(transaction_id, rec)
        return None
    store.put_txn(transaction_id, decided, rec)
    return decided


def sweep(store: Store, limit: int) -> int:
    """Times out pending transactions and forgets expired decided ones, oldest timer first, at most ``limit``."""
    due = store.due_txns(store.now_ms, limit)
    for due_ms, transaction_id in due:
        rec = store.txn(transaction_id)
        if rec is None or rec.due_ms != due_ms:  # unreachable: a record keeps exactly one W key
            store.delete_txn_due(due_ms, transaction_id)
        else:
            load(store, transaction_id)
    return len(due)


# validation


def _check_id(transaction_id: str) -> Rejected | None:
    if not 1 <= len(transaction_id) <= limits.MAX_TRANSACTION_ID_LEN:
        return Rejected(
            ErrorCode.INVALID_ARGUMENT,
            f"must be 1 to {limits.MAX_TRANSACTION_ID_LEN} characters",
            "transaction_id",
        )
    return None


def _check_retention(retention_ms: int) -> Rejected | None:
    if not limits.MIN_TXN_RETENTION_MS <= retention_ms <= limits.MAX_TXN_RETENTION_MS:
        return Rejected(
            ErrorCode.INVALID_ARGUMENT,
            f"must be {limits.MIN_TXN_RETENTION_MS // 1000} to {limits.MAX_TXN_RETENTION_MS // 1000} seconds",
            "retention_s",
        )
    return None


def items(ops: list[TxnOp]) -> int:
    """Messages plus receipts over ``ops``."""
    return sum(len(op.messages) if isinstance(op, Enqueue) else len(op.receipts) for op in ops)


def payload_bytes(ops: list[TxnOp]) -> int:
    """Bytes of message bodies and attributes over ``ops``."""
    return sum(
        len(m.body) + sum(len(k) + len(v) for k, v in m.attributes.items())
        for op in ops
        if isinstance(op, Enqueue)
        for m in op.messages
    )


def _check_ops(ops: list[TxnOp], ops_before: int = 0, items_before: int = 0, bytes_before: int = 0) -> Rejected | None:
    if not ops:
        return Rejected(ErrorCode.INVALID_ARGUMENT, "at least one op is required", "ops")
    if ops_before + len(ops) > limits.MAX_TXN_OPS:
        return Rejected(
            ErrorCode.INVALID_ARGUMENT,
            f"a transaction holds at most {limits.MAX_TXN_OPS} ops; this would make {ops_before + len(ops)}",
            "ops",
        )
    total = items_before + items(ops)
    if total > limits.MAX_TXN_ITEMS:
        return Rejected(
            ErrorCode.INVALID_ARGUMENT,
            f"a transaction holds at most {limits.MAX_TXN_ITEMS} messages and receipts; this would make {total}",
            "ops",
        )
    size = bytes_before + payload_bytes(ops)
    if size > limits.MAX_TXN_BYTES:
        return Rejected(
            ErrorCode.INVALID_ARGUMENT,
            f"a transaction holds at most {limits.MAX_TXN_BYTES} bytes of messages; this would make {size}",
            "ops",
        )
    return None


def _not_found(transaction_id: str) -> Rejected:
    return Rejected(
        ErrorCode.TRANSACTION_NOT_FOUND,
        f"transaction '{transaction_id}' does not exist (never begun, or forgotten after its retention)",
        "transaction_id",
    )


def _not_pending(transaction_id: str, rec: TxnRecord) -> Rejected:
    state = rec.status.value if rec.reason is None else f"{rec.status.value} ({rec.reason})"
    return Rejected(ErrorCode.TRANSACTION_NOT_PENDING, f"transaction '{transaction_id}' is {state}", "transaction_id")


# applying ops


def apply_ops(store: Store, ops: list[TxnOp]) -> tuple[list[StoredResult], list[TxnFailure]]:
    """Applies ``ops`` in order on a child of ``store``; absorbs it only when every op succeeded. Every op is
    evaluated (on the effects of the ones before it) so that every failure is named."""
    work = store.child()
    results: list[StoredResult] = []
    failures: list[TxnFailure] = []
    for i, op in enumerate(ops):
        step = work.child()
        result = enqueue(step, op) if isinstance(op, Enqueue) else settle(step, op)
        if isinstance(result, Rejected):
            where = f"ops[{i}]" if result.field is None else f"ops[{i}].{result.field}"
            failures.append(TxnFailure(i, result.code.value, result.detail, where))
            continue
        assert isinstance(result, Enqueued | Settled)
        work.absorb(step)
        if isinstance(result, Settled):
            for j, o in enumerate(result.outcomes):
                if o not in SETTLED_OK:
                    failures.append(TxnFailure(i, o.value, _SETTLE_FAILURE_DETAIL[o], f"ops[{i}].receipts[{j}]"))
        results.append(_stored(result))
    if not failures:
        store.absorb(work)
    return results, failures


# commands


def transact(store: Store, op: Transact) -> Result:
    tid = op.transaction_id
    bad = _check_id(tid) or _check_retention(op.retention_ms) or _check_ops(op.ops)
    if bad is not None:
        return bad
    rec = load(store, tid)
    if rec is not None:
        if rec.kind != TxnKind.ONE_SHOT:
            return Rejected(
                ErrorCode.TRANSACTION_CONFLICT, f"transaction '{tid}' is an interactive transaction", "transaction_id"
            )
        if rec.fingerprint != op.fingerprint:
            return Rejected(
                ErrorCode.TRANSACTION_CONFLICT,
                f"transaction ID '{tid}' was already used for a different transaction",
                "transaction_id",
            )
        return outcome(tid, rec, duplicate=True)
    results, failures = apply_ops(store, op.ops)
    if failures:
        return TxnOutcome(
            tid, TxnStatus.ABORTED, decided_index=store.raft_index, failures=failures, reason=REASON_PRECONDITIONS
        )
    new = TxnRecord(
        kind=TxnKind.ONE_SHOT,
        status=TxnStatus.COMMITTED,
        retention_ms=op.retention_ms,
        due_ms=store.now_ms + op.retention_ms,
        fingerprint=op.fingerprint,
        decided_index=store.raft_index,
        results=results,
    )
    store.put_txn(tid, new, None)
    return outcome(tid, new, duplicate=False)


def begin(store: Store, op: BeginTxn) -> Result:
    tid = op.transaction_id
    bad = _check_id(tid) or _check_retention(op.retention_ms)
    if bad is not None:
        return bad
    if not limits.MIN_TXN_TIMEOUT_MS <= op.timeout_ms <= limits.MAX_TXN_TIMEOUT_MS:
        return Rejected(
            ErrorCode.INVALID_ARGUMENT,
            f"must be {limits.MIN_TXN_TIMEOUT_MS // 1000} to {limits.MAX_TXN_TIMEOUT_MS // 1000} seconds",
            "timeout_s",
        )
    rec = load(store, tid)
    if rec is not None:
        if rec.kind == TxnKind.ONE_SHOT:
            return Rejected(
                ErrorCode.TRANSACTION_EXISTS,
                f"transaction ID '{tid}' was already used by a one-shot transaction",
                "transaction_id",
            )
        return outcome(tid, rec, duplicate=True)  # a retried begin: the transaction as it is now
    new = TxnRecord(
        kind=TxnKind.INTERACTIVE,
        status=TxnStatus.PENDING,
        retention_ms=op.retention_ms,
        due_ms=store.now_ms + op.timeout_ms,
    )
    store.put_txn(tid, new, None)
    return outcome(tid, new, duplicate=False)


def stage(store: Store, op: StageTxn) -> Result:
    tid = op.transaction_id
    bad = _check_id(tid)
    if bad is not None:
        return bad
    if op.stage_seq < 1:
        return Rejected(ErrorCode.INVALID_ARGUMENT, "stage calls are numbered from 1", "stage_seq")
    if not op.ops:
        return Rejected(ErrorCode.INVALID_ARGUMENT, "at least one op is required", "ops")
    rec = load(store, tid)
    if rec is None:
        return _not_found(tid)
    if rec.status != TxnStatus.PENDING:
        return _not_pending(tid, rec)
    if op.stage_seq <= rec.staged_calls:  # a retried stage call
        prior = store.stage(tid, op.stage_seq)
        if prior is None or prior.fingerprint != op.fingerprint:
            return Rejected(
                ErrorCode.TRANSACTION_CONFLICT,
                f"stage {op.stage_seq} of transaction '{tid}' was already applied with different ops",
                "stage_seq",
            )
        return outcome(tid, rec, duplicate=True)
    if op.stage_seq != rec.staged_calls + 1:
        return Rejected(
            ErrorCode.INVALID_ARGUMENT,
            f"transaction '{tid}' has {rec.staged_calls} stage calls; the next is {rec.staged_calls + 1}",
            "stage_seq",
        )
    bad = _check_ops(op.ops, rec.staged_ops, rec.staged_items, rec.staged_bytes)
    if bad is not None:
        return bad
    store.put_stage(tid, op.stage_seq, StageRecord(op.fingerprint, op.ops))
    new = msgspec.structs.replace(
        rec,
        staged_calls=op.stage_seq,
        staged_ops=rec.staged_ops + len(op.ops),
        staged_items=rec.staged_items + items(op.ops),
        staged_bytes=rec.staged_bytes + payload_bytes(op.ops),
    )
    store.put_txn(tid, new, rec)
    return outcome(tid, new, duplicate=False)


def _existing(store: Store, tid: str) -> TxnRecord | Rejected:
    """The record of a valid, known transaction ID, or why there is none."""
    bad = _check_id(tid)
    if bad is not None:
        return bad
    rec = load(store, tid)
    return _not_found(tid) if rec is None else rec


def _decide(store: Store, tid: str, rec: TxnRecord, decided: TxnRecord) -> TxnOutcome:
    """Stores ``decided`` (decided in this entry, kept for its retention) in place of ``rec``; drops the stages."""
    store.delete_stages(tid)
    decided = msgspec.structs.replace(decided, decided_index=store.raft_index, due_ms=store.now_ms + rec.retention_ms)
    store.put_txn(tid, decided, rec)
    return outcome(tid, decided, duplicate=False)


def commit(store: Store, op: CommitTxn) -> Result:
    tid = op.transaction_id
    rec = _existing(store, tid)
    if isinstance(rec, Rejected):
        return rec
    if rec.status == TxnStatus.COMMITTED:
        return outcome(tid, rec, duplicate=True)
    if rec.status == TxnStatus.ABORTED:
        if rec.reason == REASON_ABORTED:  # the client aborted it: committing it is a mistake, not a retry
            return _not_pending(tid, rec)
        return outcome(tid, rec, duplicate=True)  # a retried commit, or a commit after the deadline
    ops = [o for s in store.stages(tid) for o in s.ops]
    results, failures = apply_ops(store, ops)
    decided = msgspec.structs.replace(
        rec,
        status=TxnStatus.ABORTED if failures else TxnStatus.COMMITTED,
        reason=REASON_PRECONDITIONS if failures else None,
        results=[] if failures else results,
        failures=[(f.op, f.code, f.detail, f.field) for f in failures],
    )
    return _decide(store, tid, rec, decided)


def abort(store: Store, op: AbortTxn) -> Result:
    tid = op.transaction_id
    rec = _existing(store, tid)
    if isinstance(rec, Rejected):
        return rec
    if rec.status == TxnStatus.COMMITTED:
        return _not_pending(tid, rec)
    if rec.status == TxnStatus.ABORTED:
        return outcome(tid, rec, duplicate=True)
    return _decide(store, tid, rec, msgspec.structs.replace(rec, status=TxnStatus.ABORTED, reason=REASON_ABORTED))


def read(store: Store, transaction_id: str) -> TxnOutcome | None:
    """The transaction as of the store's clock (``store`` is a throwaway view: ``load`` may write to it)."""
    rec = load(store, transaction_id)
    return None if rec is None else outcome(transaction_id, rec, duplicate=False)
