"""Typed access to the key schema over an ``Overlay``: the only module that knows how records are keyed."""

from __future__ import annotations

from collections.abc import Iterator

from state_machine import keys
from state_machine.kv import Overlay, prefix_end
from state_machine.records import (
    ACKED_DEC,
    ATTEMPT_DEC,
    DEDUP_DEC,
    ENC,
    MESSAGE_DEC,
    QUEUE_DEC,
    STAGE_DEC,
    TXN_DEC,
    AckedRecord,
    AttemptRecord,
    DedupRecord,
    MessageRecord,
    MessageState,
    QueueMeta,
    StageRecord,
    TxnRecord,
)


class Store:
    """One entry's (or one read's) view of the state, with typed reads and buffered writes."""

    def __init__(self, overlay: Overlay, now_ms: int, raft_index: int = 0) -> None:
        self.kv = overlay
        self.now_ms = now_ms
        #: The Raft index of the entry being applied (a read: the applied index).
        self.raft_index = raft_index
        #: Queues that gained ready messages in this view (wakes long polls).
        self.woken: set[str] = set()

    def child(self) -> Store:
        return Store(Overlay(self.kv), self.now_ms, self.raft_index)

    def absorb(self, child: Store) -> None:
        self.kv.absorb(child.kv)
        self.woken |= child.woken

    # queues
    def queue(self, name: str) -> QueueMeta | None:
        raw = self.kv.get(keys.queue(name))
        return None if raw is None else QUEUE_DEC.decode(raw)

    def put_queue(self, name: str, meta: QueueMeta) -> None:
        self.kv.put(keys.queue(name), ENC.encode(meta))

    def delete_queue(self, name: str, qid: int) -> None:
        self.kv.delete(keys.queue(name))
        for a, b in keys.qid_ranges(qid):
            self.kv.delete_range(a, b)

    def queues(self) -> Iterator[tuple[str, QueueMeta]]:
        for k, v in self.kv.scan(keys.QUEUE_PREFIX, prefix_end(keys.QUEUE_PREFIX)):
            yield keys.queue_name(k), QUEUE_DEC.decode(v)

    def dead_letter_sources(self, dlq: str) -> list[str]:
        p = keys.dlq_source_prefix(dlq)
        return [k[len(p) :].decode() for k, _ in self.kv.scan(p, prefix_end(p))]

    def link_dead_letter(self, dlq: str, source: str, linked: bool) -> None:
        if linked:
            self.kv.put(keys.dlq_source(dlq, source), b"")
        else:
            self.kv.delete(keys.dlq_source(dlq, source))

    def next_qid(self) -> int:
        qid = keys.read_u64(self.kv.get(keys.NEXT_QID), 1)
        self.kv.put(keys.NEXT_QID, keys.u64(qid + 1))
        return qid

    # messages
    def message(self, qid: int, seq: int) -> MessageRecord | None:
        raw = self.kv.get(keys.message(qid, seq))
        return None if raw is None else MESSAGE_DEC.decode(raw)

    def put_message(self, qid: int, seq: int, rec: MessageRecord) -> None:
        self.kv.put(keys.message(qid, seq), ENC.encode(rec))

    def delete_message(self, qid: int, seq: int, rec: MessageRecord) -> None:
        self.unindex(qid, seq, rec)
        self.kv.delete(keys.message(qid, seq))

    def index(self, qid: int, seq: int, rec: MessageRecord) -> None:
        if rec.state == MessageState.READY:
            self.kv.put(keys.ready(qid, seq), b"")
        else:
            self.kv.put(keys.timer(qid, rec.due_ms, seq), b"")

    def unindex(self, qid: int, seq: int, rec: MessageRecord) -> None:
        if rec.state == MessageState.READY:
            self.kv.delete(keys.ready(qid, seq))
        else:
            self.kv.delete(keys.timer(qid, rec.due_ms, seq))

    def ready_seqs(self, qid: int, limit: int) -> list[int]:
        p = keys.ready_prefix(qid)
        out: list[int] = []
        for k, _ in self.kv.scan(p, prefix_end(p)):
            out.append(keys.seq_of_ready(k))
            if len(out) >= limit:
                break
        return out

    def due_timers(self, qid: int, now_ms: int) -> list[tuple[int, int]]:
        """(due, seq) of every lease or delay of ``qid`` that has ended by ``now_ms``, oldest first."""
        return [keys.parse_timer(k)[1:] for k, _ in self.kv.scan(keys.timer_prefix(qid), keys.timer_upto(qid, now_ms))]

    def next_due(self, qid: int) -> int | None:
        p = keys.timer_prefix(qid)
        first = self.kv.first(p, prefix_end(p))
        return None if first is None else keys.parse_timer(first[0])[1]

    # idempotency keys
    def dedup(self, qid: int, key: str) -> DedupRecord | None:
        raw = self.kv.get(keys.dedup(qid, key))
        return None if raw is None else DEDUP_DEC.decode(raw)

    def put_dedup(self, qid: int, key: str, rec: DedupRecord) -> None:
        self.kv.put(keys.dedup(qid, key), ENC.encode(rec))
        self.kv.put(keys.dedup_expiry(rec.expires_ms, qid, key), b"")

    def sweep_dedup(self, now_ms: int, limit: int) -> int:
        """Forgets idempotency keys whose window ended; at most ``limit`` per call (bounded work per entry)."""
        n = 0
        for k, _ in self.kv.scan(b"X", keys.dedup_expiry_upto(now_ms)):
            expires, qid, key = keys.parse_dedup_expiry(k)
            rec = self.dedup(qid, key)
            if rec is not None and rec.expires_ms == expires:
                self.kv.delete(keys.dedup(qid, key))
            self.kv.delete(k)
            n += 1
            if n >= limit:
                break
        return n

    # acked deliveries and receive attempts: records with an expiry, swept through the E index
    def acked(self, qid: int, seq: int) -> AckedRecord | None:
        raw = self.kv.get(keys.acked(qid, seq))
        return None if raw is None else ACKED_DEC.decode(raw)

    def put_acked(self, qid: int, seq: int, rec: AckedRecord) -> None:
        key = keys.acked(qid, seq)
        self.kv.put(key, ENC.encode(rec))
        self.kv.put(keys.expiry(rec.expires_ms, key), b"")

    def receive_attempt(self, qid: int, attempt_id: str) -> AttemptRecord | None:
        raw = self.kv.get(keys.receive_attempt(qid, attempt_id))
        return None if raw is None else ATTEMPT_DEC.decode(raw)

    def put_receive_attempt(self, qid: int, attempt_id: str, rec: AttemptRecord, old: AttemptRecord | None) -> None:
        key = keys.receive_attempt(qid, attempt_id)
        if old is not None:
            self.kv.delete(keys.expiry(old.expires_ms, key))
        self.kv.put(key, ENC.encode(rec))
        self.kv.put(keys.expiry(rec.expires_ms, key), b"")

    def delete_receive_attempt(self, qid: int, attempt_id: str, old: AttemptRecord) -> None:
        key = keys.receive_attempt(qid, attempt_id)
        self.kv.delete(key)
        self.kv.delete(keys.expiry(old.expires_ms, key))

    def _expires_of(self, record_key: bytes) -> int | None:
        raw = self.kv.get(record_key)
        if raw is None:
            return None
        if record_key[:1] == b"K":
            return ACKED_DEC.decode(raw).expires_ms
        return ATTEMPT_DEC.decode(raw).expires_ms

    def sweep_expiring(self, now_ms: int, limit: int) -> int:
        """Forgets acked deliveries and receive attempts that expired; at most ``limit`` per call. An index entry
        whose record is gone (its queue was deleted) or was replaced with another expiry only loses the entry."""
        n = 0
        if limit <= 0:
            return n
        for k, _ in self.kv.scan(keys.EXPIRY_PREFIX, keys.expiry_upto(now_ms)):
            expires, record_key = keys.parse_expiry(k)
            if self._expires_of(record_key) == expires:
                self.kv.delete(record_key)
            self.kv.delete(k)
            n += 1
            if n >= limit:
                break
        return n

    # transactions
    def txn(self, transaction_id: str) -> TxnRecord | None:
        raw = self.kv.get(keys.txn(transaction_id))
        return None if raw is None else TXN_DEC.decode(raw)

    def put_txn(self, transaction_id: str, rec: TxnRecord, old: TxnRecord | None) -> None:
        """Writes the record and keeps its one ``W`` key at ``rec.due_ms`` (``old``: the record it replaces)."""
        if old is not None and old.due_ms != rec.due_ms:
            self.kv.delete(keys.txn_due(old.due_ms, transaction_id))
        self.kv.put(keys.txn(transaction_id), ENC.encode(rec))
        self.kv.put(keys.txn_due(rec.due_ms, transaction_id), b"")

    def delete_txn(self, transaction_id: str, old: TxnRecord) -> None:
        self.kv.delete(keys.txn(transaction_id))
        self.kv.delete(keys.txn_due(old.due_ms, transaction_id))
        self.delete_stages(transaction_id)

    def due_txns(self, now_ms: int, limit: int) -> list[tuple[int, str]]:
        """(due, transaction ID) of transaction timers at or before ``now_ms``, oldest first, at most ``limit``."""
        out: list[tuple[int, str]] = []
        for k, _ in self.kv.scan(keys.TXN_DUE_PREFIX, keys.txn_due_upto(now_ms)):
            if len(out) >= limit:
                break
            out.append(keys.parse_txn_due(k))
        return out

    def delete_txn_due(self, due_ms: int, transaction_id: str) -> None:
        self.kv.delete(keys.txn_due(due_ms, transaction_id))

    def stage(self, transaction_id: str, stage_seq: int) -> StageRecord | None:
        raw = self.kv.get(keys.txn_stage(transaction_id, stage_seq))
        return None if raw is None else STAGE_DEC.decode(raw)

    def put_stage(self, transaction_id: str, stage_seq: int, rec: StageRecord) -> None:
        self.kv.put(keys.txn_stage(transaction_id, stage_seq), ENC.encode(rec))

    def stages(self, transaction_id: str) -> list[StageRecord]:
        """Every stage record of the transaction, in stage order."""
        p = keys.txn_stage_prefix(transaction_id)
        return [STAGE_DEC.decode(v) for _, v in self.kv.scan(p, prefix_end(p))]

    def delete_stages(self, transaction_id: str) -> None:
        p = keys.txn_stage_prefix(transaction_id)
        for k, _ in list(self.kv.scan(p, prefix_end(p))):
            self.kv.delete(k)
