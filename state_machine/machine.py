"""QueueStateMachine: applies log entries to the store, deterministically.

Contract (the rules every replica relies on):
- ``apply(index, data)`` is a pure function of the stored state and the entry bytes: no clock, no randomness,
  no I/O besides the store. Time comes from the entry (``Entry.now_ms``); the machine's clock is the max of
  its last value and that stamp, so it never goes backwards and every replica computes the same deadlines.
- An entry is applied in one atomic ``commit`` together with the applied index, so a crash leaves the store
  either before or after the whole entry. Entries at or below the stored index are skipped (pysyncobj replays
  its journal on every start).
- Domain errors are results (``Rejected``). A rejected operation leaves no trace; the others in the same entry
  still apply. Only ``UnsupportedVersion`` (this node is older than the log) and store failures raise.
- Reads (``queue_info``, ``list_queues``, ``transaction``) never write: they settle ended leases and delays (and
  time out transactions) on a throwaway overlay, so what they report is exact at the machine's clock. A lock
  makes a read and an apply exclusive (reads run on the event loop, applies on pysyncobj's tick thread), so a
  read never sees half of an entry.
"""

from __future__ import annotations

import hashlib
import threading

import msgspec

from state_machine import keys, snapshot, transactions
from state_machine.commands import (
    AbortTxn,
    Ack,
    Barrier,
    BeginTxn,
    CodecError,
    Command,
    CommitTxn,
    CreateQueue,
    DeleteQueue,
    Enqueue,
    Extend,
    Nack,
    Receive,
    StageTxn,
    Transact,
    decode_entry,
)
from state_machine.kv import KV, FrozenKV, Overlay
from state_machine.message_ops import enqueue, receive, settle
from state_machine.queue_ops import create_queue, delete_queue
from state_machine.records import QueueMeta
from state_machine.results import (
    BarrierPassed,
    ErrorCode,
    QueueCounts,
    QueueInfo,
    Rejected,
    Result,
    StateDigest,
    TxnOutcome,
)
from state_machine.store import Store
from state_machine.timers import touch

#: Idempotency keys forgotten per entry at most: bounds the work one entry can cause.
DEDUP_SWEEP_LIMIT = 1000
#: Acked deliveries and receive attempts forgotten per entry at most.
EXPIRY_SWEEP_LIMIT = 1000
#: Transaction timers (timeouts and expired records) handled per entry at most.
TXN_SWEEP_LIMIT = 256
#: A stamp beyond this (year ~140,000) is clamped, so clock + any allowed duration still fits in a u64 key.
MAX_CLOCK_MS = 1 << 52


class AppliedEntry(msgspec.Struct, frozen=True):
    """What applying one log entry did: each operation's result, in order, and the queues it woke."""

    index: int
    results: list[Result]
    #: Queues that gained ready messages (to wake long polls).
    woken: frozenset[str]


def _dispatch(store: Store, op: Command) -> Result:
    match op:
        case Enqueue():
            return enqueue(store, op)
        case Receive():
            return receive(store, op)
        case Ack() | Nack() | Extend():
            return settle(store, op)
        case CreateQueue():
            return create_queue(store, op)
        case DeleteQueue():
            return delete_queue(store, op)
        case Barrier():
            return BarrierPassed()
        case Transact():
            return transactions.transact(store, op)
        case BeginTxn():
            return transactions.begin(store, op)
        case StageTxn():
            return transactions.stage(store, op)
        case CommitTxn():
            return transactions.commit(store, op)
        case AbortTxn():
            return transactions.abort(store, op)
    raise AssertionError(f"unhandled command {op!r}")  # pragma: no cover


class QueueStateMachine:
    def __init__(self, kv: KV) -> None:
        self._kv = kv
        self.lock = threading.RLock()

    @property
    def applied_index(self) -> int:
        return keys.read_u64(self._kv.get(keys.APPLIED))

    @property
    def clock_ms(self) -> int:
        return keys.read_u64(self._kv.get(keys.CLOCK))

    @property
    def restoring(self) -> bool:
        """True when a snapshot load was interrupted: the state is incomplete and must be reloaded."""
        return self._kv.get(keys.RESTORING) is not None

    def apply(self, index: int, data: bytes) -> AppliedEntry | None:
        """Applies the entry at Raft ``index``; None when it was applied before (journal replay)."""
        with self.lock:
            return self._apply(index, data)

    def _apply(self, index: int, data: bytes) -> AppliedEntry | None:
        if index <= self.applied_index:
            return None
        try:
            entry = decode_entry(data)
        except CodecError as exc:
            overlay = Overlay(self._kv)
            overlay.put(keys.APPLIED, keys.u64(index))
            self._kv.commit(overlay.write_set())
            return AppliedEntry(index, [Rejected(ErrorCode.INVALID_ENTRY, str(exc))], frozenset())
        store = Store(Overlay(self._kv), max(self.clock_ms, min(entry.now_ms, MAX_CLOCK_MS)), index)
        store.sweep_dedup(store.now_ms, DEDUP_SWEEP_LIMIT)
        store.sweep_expiring(store.now_ms, EXPIRY_SWEEP_LIMIT)
        transactions.sweep(store, TXN_SWEEP_LIMIT)
        results: list[Result] = []
        for op in entry.ops:
            child = store.child()
            result = _dispatch(child, op)
            if not isinstance(result, Rejected):
                store.absorb(child)
            results.append(result)
        store.kv.put(keys.APPLIED, keys.u64(index))
        store.kv.put(keys.CLOCK, keys.u64(store.now_ms))
        self._kv.commit(store.kv.write_set())
        return AppliedEntry(index, results, frozenset(store.woken))

    def dump(self, path: str, meta: bytes) -> int:
        """Writes a snapshot of the whole state to ``path`` (fsynced); see ``state_machine.snapshot``."""
        with self.lock:
            return snapshot.dump(self._kv, path, meta)

    def frozen_copy(self, path: str) -> FrozenKV:
        """A point-in-time copy of the state between two applies (see ``KV.frozen_copy``), to dump from."""
        with self.lock:
            return self._kv.frozen_copy(path)

    def restore(self, path: str) -> None:
        """Replaces the whole state with the snapshot at ``path`` (verified first)."""
        with self.lock:
            snapshot.restore(self._kv, path)

    def digest(self) -> StateDigest:
        """SHA-256 over the whole store in key order (O(store); for checks that replicas agree)."""
        with self.lock:
            h = hashlib.sha256()
            n = 0
            for k, v in self._kv.scan(b"", b"\xff"):
                h.update(len(k).to_bytes(4, "big") + k + len(v).to_bytes(4, "big") + v)
                n += 1
            return StateDigest(applied_index=self.applied_index, digest=h.hexdigest(), keys=n)

    # reads
    def _view(self) -> Store:
        view = Overlay(self._kv)
        return Store(view, keys.read_u64(view.get(keys.CLOCK)), keys.read_u64(view.get(keys.APPLIED)))

    def queue_info(self, name: str) -> QueueInfo | None:
        with self.lock:
            store = self._view()
            touch(store, name)
            meta = store.queue(name)
            return None if meta is None else _info(name, meta)

    def list_queues(self) -> list[QueueInfo]:
        with self.lock:
            store = self._view()
            for name in [name for name, _ in store.queues()]:
                touch(store, name)
            return [_info(name, meta) for name, meta in store.queues()]

    def transaction(self, transaction_id: str) -> TxnOutcome | None:
        """One transaction as of the machine's clock: a pending one past its deadline reads as aborted (timeout).
        None when there is no record: never begun, a one-shot whose preconditions failed, or forgotten."""
        with self.lock:
            return transactions.read(self._view(), transaction_id)


def _info(name: str, meta: QueueMeta) -> QueueInfo:
    counts = QueueCounts(
        ready=meta.ready,
        leased=meta.leased,
        delayed=meta.delayed,
        dead_lettered=meta.dead_lettered,
        enqueued_total=meta.enqueued_total,
        acked_total=meta.acked_total,
    )
    return QueueInfo(name=name, config=meta.config, counts=counts, created_at_ms=meta.created_at_ms)
