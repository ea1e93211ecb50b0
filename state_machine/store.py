"""Typed access to the key schema over an ``Overlay``: the only module that knows how records are keyed."""

from __future__ import annotations

from collections.abc import Iterator

from state_machine import keys
from state_machine.kv import Overlay, prefix_end
from state_machine.records import (
    DEDUP_DEC,
    ENC,
    MESSAGE_DEC,
    QUEUE_DEC,
    DedupRecord,
    MessageRecord,
    MessageState,
    QueueMeta,
)


class Store:
    """One entry's (or one read's) view of the state, with typed reads and buffered writes."""

    def __init__(self, overlay: Overlay, now_ms: int) -> None:
        self.kv = overlay
        self.now_ms = now_ms
        #: Queues that gained ready messages in this view (wakes long polls).
        self.woken: set[str] = set()

    def child(self) -> Store:
        c = Store(Overlay(self.kv), self.now_ms)
        return c

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
