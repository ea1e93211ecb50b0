"""Leases and delays that run out, and dead-lettering.

Timers are processed lazily and deterministically: whenever an operation touches a queue, every lease or delay
of that queue that ended at or before the entry's clock is settled first (ready again, or moved to the
dead-letter queue when it used its last delivery). Reads run the same code on a throwaway overlay, so counts
are exact at the state machine's clock without writing anything.
"""

from __future__ import annotations

from state_machine.records import MessageRecord, MessageState, QueueMeta
from state_machine.store import Store


def dead_letter(store: Store, src: str, src_meta: QueueMeta, seq: int, rec: MessageRecord) -> None:
    """Moves one message (with its delivery count) from ``src`` to its dead-letter queue, in this entry."""
    store.delete_message(src_meta.qid, seq, rec)
    src_meta.dead_lettered += 1
    dlq_name = src_meta.config.dead_letter_queue
    dlq = store.queue(dlq_name) if dlq_name is not None else None
    if dlq_name is None or dlq is None:  # unreachable: a queue in use as a DLQ cannot be deleted
        return
    dseq = dlq.next_seq
    dlq.next_seq += 1
    moved = MessageRecord(
        message_id=rec.message_id,
        body=rec.body,
        attributes=rec.attributes,
        enqueued_at_ms=rec.enqueued_at_ms,
        state=MessageState.READY,
        delivery_count=rec.delivery_count,
        due_ms=0,
        dead_lettered_from=src,
    )
    store.put_message(dlq.qid, dseq, moved)
    store.index(dlq.qid, dseq, moved)
    dlq.ready += 1
    dlq.enqueued_total += 1
    store.put_queue(dlq_name, dlq)
    store.woken.add(dlq_name)


def exhausted(meta: QueueMeta, rec: MessageRecord) -> bool:
    return meta.config.max_deliveries > 0 and rec.delivery_count >= meta.config.max_deliveries


def settle_due(store: Store, name: str) -> None:
    """Settles every ended lease or delay of queue ``name`` at ``store.now_ms``."""
    meta = store.queue(name)
    if meta is None:
        return
    due = store.due_timers(meta.qid, store.now_ms)
    if not due:
        return
    for _, seq in due:
        rec = store.message(meta.qid, seq)
        if rec is None:  # unreachable: timers are removed with their message
            continue
        if rec.state == MessageState.LEASED and exhausted(meta, rec):
            meta.leased -= 1
            dead_letter(store, name, meta, seq, rec)
            continue
        store.unindex(meta.qid, seq, rec)
        if rec.state == MessageState.LEASED:
            meta.leased -= 1
        else:
            meta.delayed -= 1
        rec.state = MessageState.READY
        rec.due_ms = 0
        store.put_message(meta.qid, seq, rec)
        store.index(meta.qid, seq, rec)
        meta.ready += 1
        store.woken.add(name)
    store.put_queue(name, meta)


def touch(store: Store, name: str) -> None:
    """Brings ``name`` up to the clock, including messages its source queues dead-letter into it."""
    for src in store.dead_letter_sources(name):
        settle_due(store, src)
    settle_due(store, name)
