"""Creating and deleting queues."""

from __future__ import annotations

from state_machine.commands import CreateQueue, DeleteQueue
from state_machine.config import ConfigError, validate_config
from state_machine.records import QueueMeta
from state_machine.results import ErrorCode, QueueCreated, QueueDeleted, Rejected, Result
from state_machine.store import Store
from state_machine.timers import settle_due


def create_queue(store: Store, op: CreateQueue) -> Result:
    try:
        validate_config(op.name, op.config)
    except ConfigError as exc:
        return Rejected(ErrorCode.INVALID_ARGUMENT, exc.detail, exc.field)
    existing = store.queue(op.name)
    if existing is not None:
        if existing.config == op.config:
            return QueueCreated(created=False)
        return Rejected(ErrorCode.QUEUE_EXISTS, f"queue '{op.name}' exists with a different configuration", "config")
    dlq = op.config.dead_letter_queue
    if dlq is not None:
        if store.queue(dlq) is None:
            return Rejected(
                ErrorCode.DEAD_LETTER_QUEUE_NOT_FOUND,
                f"dead-letter queue '{dlq}' does not exist; create it first",
                "dead_letter_queue",
            )
        store.link_dead_letter(dlq, op.name, linked=True)
    store.put_queue(op.name, QueueMeta(qid=store.next_qid(), config=op.config, created_at_ms=store.now_ms))
    return QueueCreated(created=True)


def delete_queue(store: Store, op: DeleteQueue) -> Result:
    meta = store.queue(op.name)
    if meta is None:
        return Rejected(ErrorCode.QUEUE_NOT_FOUND, f"queue '{op.name}' does not exist")
    users = store.dead_letter_sources(op.name)
    if users:
        return Rejected(
            ErrorCode.QUEUE_IN_USE,
            f"queue '{op.name}' is the dead-letter queue of {', '.join(repr(u) for u in users)}; "
            "delete or reconfigure those first",
        )
    if meta.config.dead_letter_queue is not None:
        # Messages whose last lease already ran out belong to the dead-letter queue: move them before deleting.
        settle_due(store, op.name)
        store.link_dead_letter(meta.config.dead_letter_queue, op.name, linked=False)
    store.delete_queue(op.name, meta.qid)
    return QueueDeleted()
