"""Enqueue, receive (lease), and settling deliveries by receipt (ack, nack, extend).

Receive attempts: a receive with ``receive_attempt_id`` records which deliveries it leased, per queue, for
``RECEIVE_ATTEMPT_TTL_MS``. A retry with the same ID returns those of them that are still leased under the same
delivery (same receipts), and leases nothing new; when none is left it receives afresh and replaces the record.

Acked deliveries: an ack that deletes a message remembers (qid, seq, delivery) for the queue's dedup window, so
that the same receipt later answers ``already_acked`` (the ack took effect) rather than ``stale``.
"""

from __future__ import annotations

from state_machine import config as limits
from state_machine.commands import Ack, Enqueue, Extend, Nack, NewMessage, Receive
from state_machine.records import (
    AckedRecord,
    AttemptRecord,
    DedupRecord,
    MessageRecord,
    MessageState,
    QueueMeta,
    make_receipt,
    parse_receipt,
)
from state_machine.results import (
    Delivery,
    Enqueued,
    EnqueuedMessage,
    ErrorCode,
    Received,
    Rejected,
    Result,
    Settled,
    SettleOutcome,
)
from state_machine.store import Store
from state_machine.timers import dead_letter, exhausted, touch


def _queue_or_reject(store: Store, name: str) -> QueueMeta | Rejected:
    touch(store, name)
    meta = store.queue(name)
    if meta is None:
        return Rejected(ErrorCode.QUEUE_NOT_FOUND, f"queue '{name}' does not exist")
    return meta


def enqueue(store: Store, op: Enqueue) -> Result:
    meta = _queue_or_reject(store, op.queue)
    if isinstance(meta, Rejected):
        return meta
    if not 1 <= len(op.messages) <= limits.MAX_BATCH:
        return Rejected(ErrorCode.INVALID_ARGUMENT, f"a batch holds 1 to {limits.MAX_BATCH} messages", "messages")
    cfg = meta.config
    # Decide everything before writing anything: the batch is all or nothing.
    plan = _plan_enqueue(store, meta, op)
    if isinstance(plan, Rejected):
        return plan
    fresh = sum(1 for step in plan if isinstance(step, int) and step >= 0)
    if cfg.max_length and meta.depth + fresh > cfg.max_length:
        return Rejected(
            ErrorCode.QUEUE_FULL,
            f"queue '{op.queue}' holds {meta.depth} of at most {cfg.max_length} messages; {fresh} more do not fit",
        )
    assigned: dict[int, EnqueuedMessage] = {}
    out: list[EnqueuedMessage] = []
    for step in plan:
        if isinstance(step, EnqueuedMessage):
            out.append(step)
        elif step < 0:
            original = assigned[-1 - step]
            out.append(EnqueuedMessage(original.message_id, original.seq, duplicate=True))
        else:
            assigned[step] = _append(store, meta, op.queue, op.messages[step])
            out.append(assigned[step])
    store.put_queue(op.queue, meta)
    return Enqueued(out)


def _plan_enqueue(store: Store, meta: QueueMeta, op: Enqueue) -> list[EnqueuedMessage | int] | Rejected:
    """What each message of the batch becomes: an EnqueuedMessage for a duplicate of a stored one, ``-1 - first``
    for a duplicate of message ``first`` of this batch, else its own index (a new message); or why the batch is
    rejected."""
    cfg = meta.config
    plan: list[EnqueuedMessage | int] = []
    in_batch: dict[str, int] = {}
    for i, m in enumerate(op.messages):
        where = f"messages[{i}]"
        if len(m.body) > cfg.max_message_bytes:
            return Rejected(
                ErrorCode.MESSAGE_TOO_LARGE,
                f"body is {len(m.body)} bytes; queue '{op.queue}' accepts at most {cfg.max_message_bytes}",
                f"{where}.body",
            )
        if not 0 <= m.delay_ms <= limits.MAX_DELAY_MS:
            return Rejected(ErrorCode.INVALID_ARGUMENT, "must be 0 to 900 seconds", f"{where}.delay_s")
        key = m.idempotency_key
        if key is not None:
            seen = store.dedup(meta.qid, key)
            if seen is not None and seen.expires_ms > store.now_ms:
                if seen.fingerprint != m.fingerprint:
                    return _key_conflict(key, where)
                plan.append(EnqueuedMessage(seen.message_id, seen.seq, duplicate=True))
                continue
            if key in in_batch:
                first = in_batch[key]
                if op.messages[first].fingerprint != m.fingerprint:
                    return _key_conflict(key, where)
                plan.append(-1 - first)
                continue
            in_batch[key] = i
        plan.append(i)
    return plan


def _append(store: Store, meta: QueueMeta, queue: str, m: NewMessage) -> EnqueuedMessage:
    """Writes one new message of a batch (and its idempotency record) at the queue's next sequence number."""
    now = store.now_ms
    seq = meta.next_seq
    meta.next_seq += 1
    delayed = m.delay_ms > 0
    rec = MessageRecord(
        message_id=m.message_id,
        body=m.body,
        attributes=m.attributes,
        enqueued_at_ms=now,
        state=MessageState.DELAYED if delayed else MessageState.READY,
        due_ms=now + m.delay_ms if delayed else 0,
    )
    store.put_message(meta.qid, seq, rec)
    store.index(meta.qid, seq, rec)
    if delayed:
        meta.delayed += 1
    else:
        meta.ready += 1
        store.woken.add(queue)
    meta.enqueued_total += 1
    if m.idempotency_key is not None:
        store.put_dedup(
            meta.qid,
            m.idempotency_key,
            DedupRecord(m.message_id, seq, m.fingerprint, now + meta.config.dedup_window_ms),
        )
    return EnqueuedMessage(m.message_id, seq)


def _key_conflict(key: str, where: str) -> Rejected:
    return Rejected(
        ErrorCode.IDEMPOTENCY_KEY_CONFLICT,
        f"idempotency key '{key}' was already used for a different message",
        f"{where}.idempotency_key",
    )


def receive(store: Store, op: Receive) -> Result:
    meta = _queue_or_reject(store, op.queue)
    if isinstance(meta, Rejected):
        return meta
    if not 1 <= op.max_messages <= limits.MAX_RECEIVE:
        return Rejected(ErrorCode.INVALID_ARGUMENT, f"must be 1 to {limits.MAX_RECEIVE}", "max_messages")
    vt = meta.config.visibility_timeout_ms if op.visibility_timeout_ms is None else op.visibility_timeout_ms
    if not 0 < vt <= limits.MAX_VISIBILITY_TIMEOUT_MS:
        return Rejected(ErrorCode.INVALID_ARGUMENT, "must be > 0 and at most 43200", "visibility_timeout_s")
    attempt_id = op.receive_attempt_id
    prior: AttemptRecord | None = None
    if attempt_id is not None:
        if not 1 <= len(attempt_id) <= limits.MAX_RECEIVE_ATTEMPT_ID_LEN:
            return Rejected(
                ErrorCode.INVALID_ARGUMENT,
                f"must be 1 to {limits.MAX_RECEIVE_ATTEMPT_ID_LEN} characters",
                "receive_attempt_id",
            )
        prior = store.receive_attempt(meta.qid, attempt_id)
        if prior is not None and prior.expires_ms > store.now_ms:
            again = _still_leased(store, meta, prior)
            if again:
                return Received(again)
    out = _lease_ready(store, op.queue, meta, op.max_messages, vt)
    if attempt_id is not None:
        if out:
            leases = [(d.seq, d.delivery_count) for d in out]
            rec = AttemptRecord(leases, store.now_ms + limits.RECEIVE_ATTEMPT_TTL_MS)
            store.put_receive_attempt(meta.qid, attempt_id, rec, prior)
        elif prior is not None:  # nothing of it is leased any more, and nothing new was: forget it now
            store.delete_receive_attempt(meta.qid, attempt_id, prior)
    if out:
        return Received(out)
    return Received([], next_visible_at_ms=store.next_due(meta.qid))


def _delivery(qid: int, seq: int, rec: MessageRecord) -> Delivery:
    return Delivery(
        message_id=rec.message_id,
        seq=seq,
        body=rec.body,
        attributes=rec.attributes,
        receipt=make_receipt(qid, seq, rec.delivery_count),
        delivery_count=rec.delivery_count,
        enqueued_at_ms=rec.enqueued_at_ms,
        lease_expires_at_ms=rec.due_ms,
        dead_lettered_from=rec.dead_lettered_from,
    )


def _still_leased(store: Store, meta: QueueMeta, prior: AttemptRecord) -> list[Delivery]:
    """The deliveries of an earlier attempt whose leases are still running (not acked, nacked or expired)."""
    out: list[Delivery] = []
    for seq, delivery in prior.leases:
        rec = store.message(meta.qid, seq)
        if _is_live_lease(store, rec, delivery):
            assert rec is not None
            out.append(_delivery(meta.qid, seq, rec))
    return out


def _is_live_lease(store: Store, rec: MessageRecord | None, delivery: int) -> bool:
    return (
        rec is not None
        and rec.state == MessageState.LEASED
        and rec.delivery_count == delivery
        and rec.due_ms > store.now_ms
    )


def _lease_ready(store: Store, name: str, meta: QueueMeta, limit: int, vt: int) -> list[Delivery]:
    now = store.now_ms
    out: list[Delivery] = []
    for seq in store.ready_seqs(meta.qid, limit):
        rec = store.message(meta.qid, seq)
        if rec is None:  # unreachable: the ready index and the messages change together
            continue
        store.unindex(meta.qid, seq, rec)
        rec.state = MessageState.LEASED
        rec.delivery_count += 1
        rec.due_ms = now + vt
        store.put_message(meta.qid, seq, rec)
        store.index(meta.qid, seq, rec)
        out.append(_delivery(meta.qid, seq, rec))
    if out:
        meta.ready -= len(out)
        meta.leased += len(out)
        store.put_queue(name, meta)
    return out


def settle(store: Store, op: Ack | Nack | Extend) -> Result:
    meta = _queue_or_reject(store, op.queue)
    if isinstance(meta, Rejected):
        return meta
    if not 1 <= len(op.receipts) <= limits.MAX_BATCH:
        return Rejected(ErrorCode.INVALID_ARGUMENT, f"1 to {limits.MAX_BATCH} receipts", "receipts")
    if isinstance(op, Nack) and not 0 <= op.delay_ms <= limits.MAX_DELAY_MS:
        return Rejected(ErrorCode.INVALID_ARGUMENT, "must be 0 to 900 seconds", "delay_s")
    if isinstance(op, Extend) and not 0 < op.visibility_timeout_ms <= limits.MAX_VISIBILITY_TIMEOUT_MS:
        return Rejected(ErrorCode.INVALID_ARGUMENT, "must be > 0 and at most 43200", "visibility_timeout_s")
    now = store.now_ms
    outcomes: list[SettleOutcome] = []
    for receipt in op.receipts:
        parsed = parse_receipt(receipt)
        if parsed is None or parsed[0] != meta.qid:
            outcomes.append(SettleOutcome.INVALID)
            continue
        _, seq, delivery = parsed
        rec = store.message(meta.qid, seq)
        if rec is None:
            acked = store.acked(meta.qid, seq)
            if acked is not None and acked.delivery == delivery and acked.expires_ms > now:
                outcomes.append(SettleOutcome.ALREADY_ACKED)
            else:
                outcomes.append(SettleOutcome.STALE)
            continue
        if not _is_live_lease(store, rec, delivery):
            outcomes.append(SettleOutcome.STALE)
            continue
        outcomes.append(_settle_one(store, op, meta, seq, rec))
    store.put_queue(op.queue, meta)
    return Settled(outcomes)


def _settle_one(store: Store, op: Ack | Nack | Extend, meta: QueueMeta, seq: int, rec: MessageRecord) -> SettleOutcome:
    now = store.now_ms
    if isinstance(op, Ack):
        store.delete_message(meta.qid, seq, rec)
        store.put_acked(meta.qid, seq, AckedRecord(rec.delivery_count, now + meta.config.dedup_window_ms))
        meta.leased -= 1
        meta.acked_total += 1
        return SettleOutcome.ACKED
    if isinstance(op, Extend):
        store.unindex(meta.qid, seq, rec)
        rec.due_ms = now + op.visibility_timeout_ms
        store.put_message(meta.qid, seq, rec)
        store.index(meta.qid, seq, rec)
        return SettleOutcome.EXTENDED
    meta.leased -= 1
    if exhausted(meta, rec):
        dead_letter(store, op.queue, meta, seq, rec)
        return SettleOutcome.DEAD_LETTERED
    store.unindex(meta.qid, seq, rec)
    if op.delay_ms > 0:
        rec.state, rec.due_ms = MessageState.DELAYED, now + op.delay_ms
        meta.delayed += 1
    else:
        rec.state, rec.due_ms = MessageState.READY, 0
        meta.ready += 1
        store.woken.add(op.queue)
    store.put_message(meta.qid, seq, rec)
    store.index(meta.qid, seq, rec)
    return SettleOutcome.NACKED
