"""QueueStateMachine, one small explicit test per rule of the contract."""

from __future__ import annotations

import pytest

from state_machine import AppliedEntry, Entry, MemoryKV, QueueStateMachine, encode_entry
from state_machine import keys as k
from state_machine.commands import (
    CODEC_VERSION,
    Ack,
    Barrier,
    Command,
    CreateQueue,
    DeleteQueue,
    Enqueue,
    Extend,
    Nack,
    NewMessage,
    Receive,
    UnsupportedVersion,
)
from state_machine.config import (
    MAX_BATCH,
    MAX_DEDUP_WINDOW_MS,
    MAX_DELAY_MS,
    MAX_DELIVERIES_LIMIT,
    MAX_MESSAGE_BYTES_LIMIT,
    MAX_RECEIVE,
    MAX_VISIBILITY_TIMEOUT_MS,
    QueueConfig,
)
from state_machine.kv import prefix_end
from state_machine.machine import DEDUP_SWEEP_LIMIT
from state_machine.records import make_receipt
from state_machine.results import (
    BarrierPassed,
    Delivery,
    Enqueued,
    EnqueuedMessage,
    ErrorCode,
    QueueCounts,
    QueueCreated,
    QueueDeleted,
    Received,
    Rejected,
    Result,
    Settled,
    SettleOutcome,
)
from tests.unit.state_machine.reference_model import RandomWorkload, new_message

T0 = 1_000_000
S = SettleOutcome


def msg(
    body: bytes = b"x", key: str | None = None, delay: int = 0, mid: str = "", attrs: dict[str, str] | None = None
) -> NewMessage:
    return new_message(mid or f"id-{body.decode(errors='replace')}", body, attrs or {}, delay, key)


class Node:
    """One state machine on a MemoryKV, with an index counter and typed shortcuts."""

    def __init__(self) -> None:
        self.kv = MemoryKV()
        self.sm = QueueStateMachine(self.kv)
        self.index = 0

    def apply(self, now: int, *ops: Command) -> AppliedEntry:
        self.index += 1
        applied = self.sm.apply(self.index, encode_entry(Entry(now, list(ops))))
        assert applied is not None
        return applied

    def one(self, now: int, op: Command) -> Result:
        results = self.apply(now, op).results
        assert len(results) == 1
        return results[0]

    def create(self, name: str, now: int = T0, **config: object) -> None:
        assert self.one(now, CreateQueue(name, QueueConfig(**config))) == QueueCreated(True)  # type: ignore[arg-type]

    def enqueue(self, queue: str, *messages: NewMessage, now: int = T0) -> list[EnqueuedMessage]:
        result = self.one(now, Enqueue(queue, list(messages)))
        assert isinstance(result, Enqueued), result
        return result.messages

    def receive(self, queue: str, now: int, n: int = 1, vt: int | None = None) -> Received:
        result = self.one(now, Receive(queue, n, vt))
        assert isinstance(result, Received), result
        return result

    def receive_one(self, queue: str, now: int, vt: int | None = None) -> Delivery:
        got = self.receive(queue, now, 1, vt).messages
        assert len(got) == 1, got
        return got[0]

    def settle(self, now: int, op: Ack | Nack | Extend) -> list[SettleOutcome]:
        result = self.one(now, op)
        assert isinstance(result, Settled), result
        return result.outcomes

    def rejected(self, now: int, op: Command) -> Rejected:
        result = self.one(now, op)
        assert isinstance(result, Rejected), result
        return result

    def counts(self, name: str) -> QueueCounts:
        info = self.sm.queue_info(name)
        assert info is not None
        return info.counts

    def qid(self, name: str) -> int:
        raw = self.kv.get(k.queue(name))
        assert raw is not None
        from state_machine.records import QUEUE_DEC

        return QUEUE_DEC.decode(raw).qid


def counts(
    *, ready: int = 0, leased: int = 0, delayed: int = 0, dead: int = 0, enq: int = 0, acked: int = 0
) -> QueueCounts:
    return QueueCounts(ready, leased, delayed, dead, enq, acked)


def without_bookkeeping(items: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    return [(key, v) for key, v in items if key not in (k.APPLIED, k.CLOCK)]


@pytest.fixture
def node() -> Node:
    return Node()


# ordering and leases


def test_fifo_by_seq_among_ready_messages(node: Node) -> None:
    node.create("q", visibility_timeout_ms=100)
    assert [m.seq for m in node.enqueue("q", msg(b"a"), msg(b"b"))] == [1, 2]
    assert [m.seq for m in node.enqueue("q", msg(b"c"))] == [3]
    first = node.receive("q", T0, n=2).messages
    assert [(d.body, d.seq) for d in first] == [(b"a", 1), (b"b", 2)]
    # a nacked message is ready again at its old place: before c, which was enqueued later
    assert node.settle(T0 + 1, Nack("q", [first[0].receipt])) == [S.NACKED]
    assert [d.body for d in node.receive("q", T0 + 2, n=5).messages] == [b"a", b"c"]


def test_receive_leases_with_queue_default_or_request_timeout(node: Node) -> None:
    node.create("q", visibility_timeout_ms=100)
    node.enqueue("q", msg(b"a", attrs={"k": "v"}), msg(b"b"), now=T0 - 5)
    d = node.receive_one("q", T0 + 10)
    assert (d.message_id, d.body, d.attributes, d.delivery_count) == ("id-a", b"a", {"k": "v"}, 1)
    assert (d.enqueued_at_ms, d.lease_expires_at_ms, d.dead_lettered_from) == (T0, T0 + 110, None)
    assert node.receive_one("q", T0 + 10, vt=7).lease_expires_at_ms == T0 + 17
    assert node.counts("q") == counts(leased=2, enq=2)
    empty = node.receive("q", T0 + 11)
    assert empty.messages == [] and empty.next_visible_at_ms == T0 + 17


def test_lease_expiry_redelivers_and_the_old_receipt_is_stale(node: Node) -> None:
    node.create("q", visibility_timeout_ms=100)
    node.enqueue("q", msg(b"a"))
    first = node.receive_one("q", T0)
    assert node.receive("q", T0 + 99).messages == []
    assert node.counts("q") == counts(leased=1, enq=1)
    second = node.receive_one("q", T0 + 100)  # due_ms <= now: the lease has ended
    assert (second.seq, second.delivery_count) == (first.seq, 2)
    assert second.receipt != first.receipt
    assert node.settle(T0 + 101, Ack("q", [first.receipt])) == [S.STALE]
    assert node.settle(T0 + 101, Ack("q", [second.receipt])) == [S.ACKED]
    assert node.counts("q") == counts(enq=1, acked=1)


def test_a_lease_ends_exactly_at_its_deadline(node: Node) -> None:
    node.create("q", visibility_timeout_ms=100)
    node.enqueue("q", msg(b"a"), msg(b"b"))
    a, b = node.receive("q", T0, n=2).messages
    assert node.settle(T0 + 99, Ack("q", [a.receipt])) == [S.ACKED]
    assert node.settle(T0 + 100, Ack("q", [b.receipt])) == [S.STALE]
    assert node.counts("q") == counts(ready=1, enq=2, acked=1)


def test_extend_moves_the_deadline_from_now_without_a_new_delivery(node: Node) -> None:
    node.create("q", visibility_timeout_ms=100)
    node.enqueue("q", msg(b"a"))
    d = node.receive_one("q", T0)
    assert node.settle(T0 + 90, Extend("q", [d.receipt], 100)) == [S.EXTENDED]
    empty = node.receive("q", T0 + 150)
    assert empty.messages == [] and empty.next_visible_at_ms == T0 + 190
    assert node.settle(T0 + 189, Extend("q", [d.receipt], 5)) == [S.EXTENDED]  # may also shorten
    assert node.settle(T0 + 194, Ack("q", [d.receipt])) == [S.STALE]
    again = node.receive_one("q", T0 + 194)
    assert again.delivery_count == 2
    assert node.settle(T0 + 195, Extend("q", [d.receipt], 100)) == [S.STALE]


def test_nack_without_delay_is_ready_at_once_and_wakes(node: Node) -> None:
    node.create("q")
    node.enqueue("q", msg(b"a"))
    d = node.receive_one("q", T0)
    applied = node.apply(T0 + 1, Nack("q", [d.receipt]))
    assert applied.results == [Settled([S.NACKED])] and applied.woken == frozenset({"q"})
    assert node.counts("q") == counts(ready=1, enq=1)
    assert node.settle(T0 + 2, Nack("q", [d.receipt])) == [S.STALE]  # that delivery is over
    assert node.receive_one("q", T0 + 2).delivery_count == 2


def test_nack_with_delay(node: Node) -> None:
    node.create("q")
    node.enqueue("q", msg(b"a"))
    d = node.receive_one("q", T0)
    applied = node.apply(T0 + 10, Nack("q", [d.receipt], 50))
    assert applied.results == [Settled([S.NACKED])] and applied.woken == frozenset()
    assert node.counts("q") == counts(delayed=1, enq=1)
    early = node.receive("q", T0 + 59)
    assert early.messages == [] and early.next_visible_at_ms == T0 + 60
    again = node.receive_one("q", T0 + 60)
    assert (again.seq, again.delivery_count) == (d.seq, 2)


def test_delayed_enqueue_counts_as_delayed_until_due(node: Node) -> None:
    node.create("q")
    applied = node.apply(T0, Enqueue("q", [msg(b"a", delay=30)]))
    assert applied.woken == frozenset()
    assert node.counts("q") == counts(delayed=1, enq=1)
    node.apply(T0 + 30, Barrier())
    assert node.counts("q") == counts(ready=1, enq=1)  # exact at the clock, before anything touches q
    assert node.receive_one("q", T0 + 30).body == b"a"


def test_ack_deletes_and_a_second_ack_is_already_acked(node: Node) -> None:
    """Before version 2 the second ack answered stale; now the ack is remembered (see test_transactions)."""
    node.create("q")
    node.enqueue("q", msg(b"a"))
    d = node.receive_one("q", T0)
    assert node.settle(T0, Ack("q", [d.receipt, d.receipt])) == [S.ACKED, S.ALREADY_ACKED]
    assert node.counts("q") == counts(enq=1, acked=1)
    assert list(node.kv.scan(b"M", b"N")) == []


def test_invalid_and_stale_receipts(node: Node) -> None:
    node.create("q")
    node.create("other")
    node.enqueue("q", msg(b"a"))
    node.enqueue("other", msg(b"b"))
    mine = node.receive_one("q", T0)
    theirs = node.receive_one("other", T0)
    qid = node.qid("q")
    outcomes = node.settle(
        T0,
        Ack(
            "q",
            [
                "garbage",
                "",
                theirs.receipt,  # another queue's
                make_receipt(qid, 99, 1),  # no such message
                make_receipt(qid, mine.seq, 2),  # a delivery that did not happen
                mine.receipt,
            ],
        ),
    )
    assert outcomes == [S.INVALID, S.INVALID, S.INVALID, S.STALE, S.STALE, S.ACKED]
    assert node.counts("other") == counts(leased=1, enq=1)


# dead-lettering


def test_dead_letter_on_lease_expiry_keeps_the_delivery_history(node: Node) -> None:
    node.create("dl")
    node.create("src", visibility_timeout_ms=100, max_deliveries=2, dead_letter_queue="dl")
    node.enqueue("src", msg(b"a", attrs={"k": "v"}), now=T0 - 1)  # stamped before the clock: enqueued at T0
    assert node.receive_one("src", T0).delivery_count == 1
    assert node.receive_one("src", T0 + 100).delivery_count == 2
    before = node.kv.items()
    node.apply(T0 + 200, Barrier())  # the second lease ends; nothing touches src yet
    # reads are exact at the clock and do not write
    assert node.counts("src") == counts(dead=1, enq=1)
    assert node.counts("dl") == counts(ready=1, enq=1)
    assert without_bookkeeping(node.kv.items()) == without_bookkeeping(before)
    applied = node.apply(T0 + 201, Receive("src"))
    assert applied.results == [Received([], next_visible_at_ms=None)]
    assert applied.woken == frozenset({"dl"})
    d = node.receive_one("dl", T0 + 202)
    assert (d.message_id, d.body, d.attributes, d.enqueued_at_ms) == ("id-a", b"a", {"k": "v"}, T0)
    assert (d.delivery_count, d.dead_lettered_from, d.seq) == (3, "src", 1)


def test_dead_letter_queue_sees_moved_messages_without_the_source_being_touched(node: Node) -> None:
    node.create("dl")
    node.create("src", visibility_timeout_ms=100, max_deliveries=1, dead_letter_queue="dl")
    node.enqueue("src", msg(b"a"))
    node.receive_one("src", T0)
    d = node.receive_one("dl", T0 + 100)  # touching dl settles its source queues first
    assert (d.body, d.dead_lettered_from, d.delivery_count) == (b"a", "src", 2)
    assert node.counts("src") == counts(dead=1, enq=1)


def test_dead_letter_on_nack_of_the_last_delivery(node: Node) -> None:
    node.create("dl")
    node.create("src", max_deliveries=1, dead_letter_queue="dl")
    node.enqueue("src", msg(b"a"), msg(b"b"))
    a, b = node.receive("src", T0, n=2).messages
    applied = node.apply(T0 + 1, Nack("src", [a.receipt]), Nack("src", [b.receipt], 500))
    assert applied.results == [Settled([S.DEAD_LETTERED]), Settled([S.DEAD_LETTERED])]
    assert applied.woken == frozenset({"dl"})
    assert node.counts("src") == counts(dead=2, enq=2)
    assert node.counts("dl") == counts(ready=2, enq=2)
    moved = node.receive("dl", T0 + 2, n=5).messages
    assert [(d.body, d.delivery_count, d.dead_lettered_from) for d in moved] == [(b"a", 2, "src"), (b"b", 2, "src")]
    assert node.settle(T0 + 3, Ack("src", [a.receipt])) == [S.STALE]


def test_nack_before_the_last_delivery_does_not_dead_letter(node: Node) -> None:
    node.create("dl")
    node.create("src", max_deliveries=2, dead_letter_queue="dl")
    node.enqueue("src", msg(b"a"))
    d1 = node.receive_one("src", T0)
    assert node.settle(T0, Nack("src", [d1.receipt])) == [S.NACKED]
    d2 = node.receive_one("src", T0)
    assert node.settle(T0, Nack("src", [d2.receipt])) == [S.DEAD_LETTERED]


def test_deleting_a_source_queue_keeps_the_messages_it_already_dead_lettered(node: Node) -> None:
    """Regression: deleting the source dropped a message whose last lease had ended but was not yet moved."""
    node.create("dl")
    node.create("src", visibility_timeout_ms=100, max_deliveries=1, dead_letter_queue="dl")
    node.enqueue("src", msg(b"a"))
    node.receive_one("src", T0)
    node.apply(T0 + 200, Barrier())
    assert node.counts("dl") == counts(ready=1, enq=1)  # what a client reads
    assert node.one(T0 + 200, DeleteQueue("src")) == QueueDeleted()
    assert node.counts("dl") == counts(ready=1, enq=1)  # deleting src must not take it back
    assert node.receive_one("dl", T0 + 201).dead_lettered_from == "src"


# limits


def test_max_length_is_exact_and_batches_are_all_or_nothing(node: Node) -> None:
    node.create("q", max_length=3)
    node.enqueue("q", msg(b"a", key="ka"), msg(b"b"))
    full = node.rejected(T0, Enqueue("q", [msg(b"c"), msg(b"d")]))
    assert (full.code, full.field) == (ErrorCode.QUEUE_FULL, None)
    assert node.counts("q") == counts(ready=2, enq=2)
    assert [m.seq for m in node.enqueue("q", msg(b"c"))] == [3]  # the refused batch used no seq
    assert node.rejected(T0, Enqueue("q", [msg(b"d")])).code == ErrorCode.QUEUE_FULL
    # a duplicate adds nothing, so it is answered even when the queue is full
    assert node.enqueue("q", msg(b"a", key="ka", mid="other")) == [EnqueuedMessage("id-a", 1, duplicate=True)]
    # leased and delayed messages count too
    d = node.receive_one("q", T0)
    assert node.rejected(T0, Enqueue("q", [msg(b"d")])).code == ErrorCode.QUEUE_FULL
    assert node.settle(T0, Ack("q", [d.receipt])) == [S.ACKED]
    node.enqueue("q", msg(b"d", delay=100))
    assert node.counts("q") == counts(ready=2, delayed=1, enq=4, acked=1)
    assert node.rejected(T0, Enqueue("q", [msg(b"e")])).code == ErrorCode.QUEUE_FULL


def test_message_size_limit_names_the_message(node: Node) -> None:
    node.create("q", max_message_bytes=3)
    node.enqueue("q", msg(b"abc"))
    r = node.rejected(T0, Enqueue("q", [msg(b"ok"), msg(b"abcd")]))
    assert (r.code, r.field) == (ErrorCode.MESSAGE_TOO_LARGE, "messages[1].body")
    r = node.rejected(T0, Enqueue("q", [msg(b"ok"), msg(b"x", delay=-1)]))
    assert (r.code, r.field) == (ErrorCode.INVALID_ARGUMENT, "messages[1].delay_s")
    r = node.rejected(T0, Enqueue("q", [msg(b"x", delay=MAX_DELAY_MS + 1)]))
    assert (r.code, r.field) == (ErrorCode.INVALID_ARGUMENT, "messages[0].delay_s")
    assert node.counts("q") == counts(ready=1, enq=1)


# idempotency keys


def test_a_known_key_returns_the_original_message(node: Node) -> None:
    node.create("q")
    assert node.enqueue("q", msg(b"a", key="k", mid="m1")) == [EnqueuedMessage("m1", 1)]
    applied = node.apply(T0 + 5, Enqueue("q", [msg(b"a", key="k", mid="m2")]))
    assert applied.results == [Enqueued([EnqueuedMessage("m1", 1, duplicate=True)])]
    assert applied.woken == frozenset()
    d = node.receive_one("q", T0 + 6)
    node.settle(T0 + 6, Ack("q", [d.receipt]))
    # still within the window after the message is gone
    assert node.enqueue("q", msg(b"a", key="k", mid="m3"), now=T0 + 7) == [EnqueuedMessage("m1", 1, True)]
    assert node.counts("q") == counts(enq=1, acked=1)


def test_after_the_dedup_window_the_same_key_enqueues_anew(node: Node) -> None:
    node.create("q", dedup_window_ms=1000)
    node.enqueue("q", msg(b"a", key="k", mid="m1"))
    assert node.enqueue("q", msg(b"a", key="k", mid="m2"), now=T0 + 999) == [EnqueuedMessage("m1", 1, True)]
    assert node.enqueue("q", msg(b"b", key="k", mid="m3"), now=T0 + 1000) == [EnqueuedMessage("m3", 2)]
    # the new message owns the key now, with a new window
    assert node.enqueue("q", msg(b"b", key="k", mid="m4"), now=T0 + 1999) == [EnqueuedMessage("m3", 2, True)]
    assert node.rejected(T0 + 1999, Enqueue("q", [msg(b"a", key="k")])).code == ErrorCode.IDEMPOTENCY_KEY_CONFLICT
    assert node.counts("q") == counts(ready=2, enq=2)


def test_expired_keys_are_swept_from_the_store(node: Node) -> None:
    node.create("q", dedup_window_ms=10)
    node.enqueue("q", msg(b"a", key="k"))
    assert list(node.kv.scan(b"D", b"E")) != [] and list(node.kv.scan(b"X", b"Y")) != []
    node.apply(T0 + 10, Barrier())
    assert list(node.kv.scan(b"D", b"E")) == [] and list(node.kv.scan(b"X", b"Y")) == []


def test_the_dedup_sweep_is_bounded_and_never_forgets_a_live_key(node: Node) -> None:
    node.create("q", dedup_window_ms=10)
    keys = [f"k{i:04}" for i in range(DEDUP_SWEEP_LIMIT + 1)]
    node.enqueue("q", *(msg(b"a", key=key, mid=key) for key in keys[:MAX_BATCH]))
    node.enqueue("q", *(msg(b"a", key=key, mid=key) for key in keys[MAX_BATCH:]))
    # At T0+10 every key has expired, but one entry forgets at most DEDUP_SWEEP_LIMIT of them: the last key is
    # still stored, expired. It must not count, and re-enqueueing it must survive the later sweep of its old
    # expiry entry.
    last = keys[-1]
    assert node.enqueue("q", msg(b"b", key=last, mid="again"), now=T0 + 10) == [EnqueuedMessage("again", 1002)]
    node.apply(T0 + 11, Barrier())  # sweeps the old expiry entry of ``last``
    assert node.enqueue("q", msg(b"b", key=last, mid="third"), now=T0 + 12) == [EnqueuedMessage("again", 1002, True)]


@pytest.mark.parametrize(
    "other",
    [
        msg(b"b", key="k"),  # another body
        msg(b"a", key="k", attrs={"x": "y"}),  # other attributes
        msg(b"a", key="k", delay=10),  # another delay
    ],
)
def test_a_known_key_with_another_payload_is_a_conflict(node: Node, other: NewMessage) -> None:
    node.create("q")
    node.enqueue("q", msg(b"a", key="k"))
    before = without_bookkeeping(node.kv.items())
    r = node.rejected(T0 + 1, Enqueue("q", [msg(b"fine"), other]))
    assert (r.code, r.field) == (ErrorCode.IDEMPOTENCY_KEY_CONFLICT, "messages[1].idempotency_key")
    assert without_bookkeeping(node.kv.items()) == before


def test_duplicates_within_one_batch(node: Node) -> None:
    node.create("q")
    out = node.enqueue("q", msg(b"a", key="k", mid="m1"), msg(b"a", key="k", mid="m2"), msg(b"c", mid="m3"))
    assert out == [EnqueuedMessage("m1", 1), EnqueuedMessage("m1", 1, True), EnqueuedMessage("m3", 2)]
    assert node.counts("q") == counts(ready=2, enq=2)
    r = node.rejected(T0, Enqueue("q", [msg(b"x", key="j"), msg(b"y", key="j")]))
    assert (r.code, r.field) == (ErrorCode.IDEMPOTENCY_KEY_CONFLICT, "messages[1].idempotency_key")
    assert node.counts("q") == counts(ready=2, enq=2)


def test_in_batch_duplicates_do_not_count_against_max_length(node: Node) -> None:
    node.create("q", max_length=1)
    assert node.enqueue("q", msg(b"a", key="k"), msg(b"a", key="k")) == [
        EnqueuedMessage("id-a", 1),
        EnqueuedMessage("id-a", 1, True),
    ]


# entries and operations


def test_a_rejected_op_leaves_no_trace_and_the_others_apply(node: Node) -> None:
    node.create("q", max_message_bytes=4)
    applied = node.apply(
        T0 + 1,
        Enqueue("q", [msg(b"a")]),
        Enqueue("nope", [msg(b"b")]),
        Enqueue("q", [msg(b"ok"), msg(b"toolong")]),
        CreateQueue("bad name", QueueConfig()),
        Receive("q", 5),
    )
    codes = [r.code if isinstance(r, Rejected) else type(r).__name__ for r in applied.results]
    assert codes == [
        "Enqueued",
        ErrorCode.QUEUE_NOT_FOUND,
        ErrorCode.MESSAGE_TOO_LARGE,
        ErrorCode.INVALID_ARGUMENT,
        "Received",
    ]
    # byte for byte the store of a machine that got only the accepted operations
    twin = Node()
    twin.create("q", max_message_bytes=4)
    twin.apply(T0 + 1, Enqueue("q", [msg(b"a")]), Receive("q", 5))
    assert node.kv.items() == twin.kv.items()


def test_queue_not_found(node: Node) -> None:
    for op in (
        Enqueue("nope", [msg()]),
        Receive("nope"),
        Ack("nope", ["r"]),
        Nack("nope", ["r"]),
        Extend("nope", ["r"], 10),
        DeleteQueue("nope"),
    ):
        assert node.rejected(T0, op).code == ErrorCode.QUEUE_NOT_FOUND, op


@pytest.mark.parametrize(
    ("op", "field"),
    [
        (Enqueue("q", []), "messages"),
        (Enqueue("q", [msg()] * (MAX_BATCH + 1)), "messages"),
        (Receive("q", 0), "max_messages"),
        (Receive("q", MAX_RECEIVE + 1), "max_messages"),
        (Receive("q", 1, 0), "visibility_timeout_s"),
        (Receive("q", 1, MAX_VISIBILITY_TIMEOUT_MS + 1), "visibility_timeout_s"),
        (Ack("q", []), "receipts"),
        (Ack("q", ["r"] * (MAX_BATCH + 1)), "receipts"),
        (Nack("q", ["r"], -1), "delay_s"),
        (Nack("q", ["r"], MAX_DELAY_MS + 1), "delay_s"),
        (Extend("q", ["r"], 0), "visibility_timeout_s"),
        (Extend("q", ["r"], MAX_VISIBILITY_TIMEOUT_MS + 1), "visibility_timeout_s"),
    ],
)
def test_out_of_range_arguments_name_their_field(node: Node, op: Command, field: str) -> None:
    node.create("q")
    node.enqueue("q", msg())
    before = without_bookkeeping(node.kv.items())
    r = node.rejected(T0, op)
    assert (r.code, r.field) == (ErrorCode.INVALID_ARGUMENT, field)
    assert without_bookkeeping(node.kv.items()) == before


# queues


def test_create_is_idempotent_and_a_different_config_conflicts(node: Node) -> None:
    node.create("q", visibility_timeout_ms=100)
    assert node.one(T0 + 5, CreateQueue("q", QueueConfig(visibility_timeout_ms=100))) == QueueCreated(False)
    r = node.rejected(T0 + 5, CreateQueue("q", QueueConfig(visibility_timeout_ms=200)))
    assert (r.code, r.field) == (ErrorCode.QUEUE_EXISTS, "config")
    info = node.sm.queue_info("q")
    assert info is not None and info.created_at_ms == T0 and info.config.visibility_timeout_ms == 100


def test_the_dead_letter_queue_must_exist(node: Node) -> None:
    cfg = QueueConfig(max_deliveries=1, dead_letter_queue="dl")
    r = node.rejected(T0, CreateQueue("src", cfg))
    assert (r.code, r.field) == (ErrorCode.DEAD_LETTER_QUEUE_NOT_FOUND, "dead_letter_queue")
    assert without_bookkeeping(node.kv.items()) == []
    node.create("dl")
    assert node.one(T0, CreateQueue("src", cfg)) == QueueCreated(True)


def test_a_queue_in_use_as_a_dead_letter_queue_cannot_be_deleted(node: Node) -> None:
    node.create("dl")
    node.create("src", max_deliveries=1, dead_letter_queue="dl")
    assert node.rejected(T0, DeleteQueue("dl")).code == ErrorCode.QUEUE_IN_USE
    assert node.one(T0, DeleteQueue("src")) == QueueDeleted()
    assert node.one(T0, DeleteQueue("dl")) == QueueDeleted()
    assert node.sm.list_queues() == []


def test_delete_removes_every_message_and_a_recreated_queue_refuses_old_receipts(node: Node) -> None:
    node.create("q")
    node.enqueue("q", msg(b"a", key="k"), msg(b"b", delay=50), msg(b"c"))
    old = node.receive_one("q", T0)
    qid = node.qid("q")
    assert node.one(T0, DeleteQueue("q")) == QueueDeleted()
    assert node.sm.queue_info("q") is None
    for tag in (b"M", b"R", b"T", b"D"):
        p = tag + k.u64(qid)
        assert list(node.kv.scan(p, prefix_end(p))) == [], tag
    node.create("q")
    assert node.counts("q") == counts()
    assert node.settle(T0, Ack("q", [old.receipt])) == [S.INVALID]
    assert node.enqueue("q", msg(b"a", key="k")) == [EnqueuedMessage("id-a", 1)]  # the key was forgotten too


@pytest.mark.parametrize(
    ("name", "config", "field"),
    [
        ("", QueueConfig(), "queue"),
        ("-leading-dash", QueueConfig(), "queue"),
        ("has space", QueueConfig(), "queue"),
        ("x" * 129, QueueConfig(), "queue"),
        ("q", QueueConfig(visibility_timeout_ms=0), "visibility_timeout_s"),
        ("q", QueueConfig(visibility_timeout_ms=MAX_VISIBILITY_TIMEOUT_MS + 1), "visibility_timeout_s"),
        ("q", QueueConfig(max_deliveries=-1), "max_deliveries"),
        ("q", QueueConfig(max_deliveries=MAX_DELIVERIES_LIMIT + 1, dead_letter_queue="dl"), "max_deliveries"),
        ("q", QueueConfig(max_deliveries=1), "dead_letter_queue"),
        ("q", QueueConfig(max_deliveries=1, dead_letter_queue="bad name"), "dead_letter_queue"),
        ("q", QueueConfig(max_deliveries=1, dead_letter_queue="q"), "dead_letter_queue"),
        ("q", QueueConfig(dead_letter_queue="dl"), "max_deliveries"),
        ("q", QueueConfig(max_length=-1), "max_length"),
        ("q", QueueConfig(dedup_window_ms=0), "dedup_window_s"),
        ("q", QueueConfig(dedup_window_ms=MAX_DEDUP_WINDOW_MS + 1), "dedup_window_s"),
        ("q", QueueConfig(max_message_bytes=0), "max_message_bytes"),
        ("q", QueueConfig(max_message_bytes=MAX_MESSAGE_BYTES_LIMIT + 1), "max_message_bytes"),
    ],
)
def test_config_validation_names_the_field(node: Node, name: str, config: QueueConfig, field: str) -> None:
    node.create("dl")
    before = without_bookkeeping(node.kv.items())
    r = node.rejected(T0, CreateQueue(name, config))
    assert (r.code, r.field) == (ErrorCode.INVALID_ARGUMENT, field)
    assert without_bookkeeping(node.kv.items()) == before


def test_config_limits_themselves_are_accepted(node: Node) -> None:
    node.create("dl")
    config = QueueConfig(
        visibility_timeout_ms=MAX_VISIBILITY_TIMEOUT_MS,
        max_deliveries=MAX_DELIVERIES_LIMIT,
        dead_letter_queue="dl",
        dedup_window_ms=MAX_DEDUP_WINDOW_MS,
        max_message_bytes=MAX_MESSAGE_BYTES_LIMIT,
    )
    assert node.one(T0, CreateQueue("A" + "b" * 127, config)) == QueueCreated(True)
    assert node.one(T0, CreateQueue("0.x_y-z", QueueConfig())) == QueueCreated(True)


@pytest.mark.parametrize("name", ["q\n", "dl\n"])
def test_a_queue_name_with_a_trailing_newline_is_invalid(node: Node, name: str) -> None:
    """Regression: the name pattern ended in '$', which also matches before a trailing newline."""
    node.create("dl")
    if name == "q\n":
        r = node.rejected(T0, CreateQueue(name, QueueConfig()))
        assert (r.code, r.field) == (ErrorCode.INVALID_ARGUMENT, "queue")
    else:
        r = node.rejected(T0, CreateQueue("q", QueueConfig(max_deliveries=1, dead_letter_queue=name)))
        assert (r.code, r.field) == (ErrorCode.INVALID_ARGUMENT, "dead_letter_queue")


def test_list_queues_is_sorted_by_name(node: Node) -> None:
    for name in ("b", "a", "C", "a.b"):
        node.create(name)
    assert [i.name for i in node.sm.list_queues()] == ["C", "a", "a.b", "b"]


# receipts


def test_a_receipt_with_junk_characters_is_invalid(node: Node) -> None:
    """Regression: base64 decoding skips junk characters, so a mangled receipt still named a delivery."""
    node.create("q")
    node.enqueue("q", msg(b"a"))
    d = node.receive_one("q", T0)
    assert node.settle(T0, Extend("q", [d.receipt + "!!!!", " " + d.receipt, d.receipt + "=="], 10)) == [
        S.INVALID,
        S.INVALID,
        S.INVALID,
    ]


# the log: replay, garbage, versions, time


def test_an_index_applied_before_is_skipped(node: Node) -> None:
    node.create("q")
    node.enqueue("q", msg(b"a"))
    before = node.kv.items()
    again = encode_entry(Entry(T0 + 500, [Receive("q"), CreateQueue("r", QueueConfig())]))
    assert node.sm.apply(node.index, again) is None
    assert node.sm.apply(1, again) is None
    assert node.kv.items() == before
    assert node.sm.applied_index == node.index


@pytest.mark.parametrize(
    "data",
    [
        b"",
        bytes((CODEC_VERSION,)),
        bytes((CODEC_VERSION,)) + b"\xc1",
        encode_entry(Entry(T0 + 99, [Barrier()]))[:-1],
        encode_entry(Entry(T0 + 99, [Barrier()])) + b"\x00",
        b"\x00" + encode_entry(Entry(T0 + 99, [Barrier()]))[1:],
    ],
)
def test_a_garbage_entry_is_rejected_whole_and_only_the_index_moves(node: Node, data: bytes) -> None:
    node.create("q")
    before = node.kv.items()
    applied = node.sm.apply(2, data)
    assert applied is not None
    assert (applied.index, applied.woken, len(applied.results)) == (2, frozenset(), 1)
    assert isinstance(applied.results[0], Rejected) and applied.results[0].code == ErrorCode.INVALID_ENTRY
    after = node.kv.items()
    assert [(key, v) for key, v in after if key != k.APPLIED] == [(key, v) for key, v in before if key != k.APPLIED]
    assert node.sm.applied_index == 2 and node.sm.clock_ms == T0


def test_an_entry_with_invalid_utf8_is_a_garbage_entry(node: Node) -> None:
    """Regression: msgspec raises UnicodeDecodeError (not DecodeError) for a string that is not UTF-8; it escaped
    decode_entry, so a damaged entry raised out of apply on every replica instead of being rejected."""
    node.create("q")
    damaged = bytearray(encode_entry(Entry(T0, [DeleteQueue("q")])))
    damaged[damaged.rindex(b"q")] = 0x80  # the queue name's only byte: now not UTF-8
    applied = node.sm.apply(2, bytes(damaged))
    assert applied is not None and len(applied.results) == 1
    assert isinstance(applied.results[0], Rejected) and applied.results[0].code == ErrorCode.INVALID_ENTRY
    assert node.sm.queue_info("q") is not None


@pytest.mark.parametrize("version", [CODEC_VERSION + 1, 0xFF])
def test_a_newer_codec_version_stops_the_node_and_changes_nothing(node: Node, version: int) -> None:
    node.create("q")
    before = node.kv.items()
    newer = bytes((version,)) + encode_entry(Entry(T0, [CreateQueue("r", QueueConfig())]))[1:]
    with pytest.raises(UnsupportedVersion) as exc:
        node.sm.apply(2, newer)
    assert exc.value.version == version
    assert node.kv.items() == before
    # an upgraded node applies the same index
    assert node.sm.apply(2, encode_entry(Entry(T0, [Barrier()]))) is not None


def test_the_clock_never_goes_backwards(node: Node) -> None:
    node.apply(T0 + 1000, Barrier())
    assert node.sm.clock_ms == T0 + 1000
    node.create("q", now=T0, visibility_timeout_ms=100)  # stamped earlier than the stored clock
    node.enqueue("q", msg(b"a"), now=T0 + 5)
    d = node.receive_one("q", T0 + 10)
    assert (d.enqueued_at_ms, d.lease_expires_at_ms) == (T0 + 1000, T0 + 1100)
    info = node.sm.queue_info("q")
    assert info is not None and info.created_at_ms == T0 + 1000
    assert node.sm.clock_ms == T0 + 1000
    # the lease is still running by the stored clock even though the stamp says otherwise
    assert node.settle(T0 + 1099 - 1000, Ack("q", [d.receipt])) == [S.ACKED]


def test_an_empty_entry_moves_the_clock(node: Node) -> None:
    applied = node.apply(
        T0,
    )
    assert applied.results == [] and node.sm.clock_ms == T0
    assert node.one(T0, Barrier()) == BarrierPassed()


def test_a_stamp_near_the_end_of_u64_does_not_crash_the_machine(node: Node) -> None:
    """Regression: a stamp near 2**64 overflowed the u64 key packing (struct.error out of apply on every replica).

    Only UnsupportedVersion and store failures may raise out of apply."""
    node.create("q")
    node.enqueue("q", msg(b"a", key="k"))
    applied = node.sm.apply(node.index + 1, encode_entry(Entry(2**64 - 1, [Receive("q")])))
    assert applied is not None and isinstance(applied.results[0], Received)
    assert node.sm.apply(node.index + 2, encode_entry(Entry(2**63, [Enqueue("q", [msg(b"b", key="j")])]))) is not None


# reads


def test_reads_never_write_and_are_exact_at_the_clock(node: Node) -> None:
    node.create("dl")
    node.create("q", visibility_timeout_ms=100, max_deliveries=2, dead_letter_queue="dl")
    node.enqueue("q", msg(b"a"), msg(b"b"), msg(b"c"), msg(b"d", delay=150))
    assert len(node.receive("q", T0, n=3).messages) == 3
    assert node.receive_one("q", T0 + 100).body == b"a"  # delivery 2
    node.apply(T0 + 250, Barrier())  # a's second lease (T0+200) ended: dead-lettered; b and c ready; d ready
    before = node.kv.items()
    assert node.counts("q") == counts(ready=3, dead=1, enq=4)
    assert node.counts("dl") == counts(ready=1, enq=1)
    assert [(i.name, i.counts) for i in node.sm.list_queues()] == [
        ("dl", counts(ready=1, enq=1)),
        ("q", counts(ready=3, dead=1, enq=4)),
    ]
    assert node.sm.queue_info("nope") is None
    assert node.kv.items() == before
    # and the writes agree with what the reads said
    assert [d.body for d in node.receive("q", T0 + 250, n=5).messages] == [b"b", b"c", b"d"]


def test_woken_names_the_queues_that_gained_ready_messages(node: Node) -> None:
    node.create("q", visibility_timeout_ms=100)
    node.create("r")
    assert node.apply(T0, Enqueue("q", [msg(b"a")]), Enqueue("r", [msg(b"b", delay=5)])).woken == {"q"}
    node.receive_one("q", T0)
    assert node.apply(T0 + 5, Barrier()).woken == frozenset()  # nothing is touched
    assert node.apply(T0 + 100, Receive("r", 1), Receive("q", 1)).woken == {"q", "r"}


# determinism


def test_the_same_entries_give_byte_identical_stores() -> None:
    one, two = Node(), Node()
    workload = RandomWorkload(seed=7)
    for index in range(1, 400):
        data = encode_entry(workload.next_entry())
        a, b = one.sm.apply(index, data), two.sm.apply(index, data)
        assert a == b
        workload.observe(a)
        assert one.kv.items() == two.kv.items()
    assert len(one.kv.items()) > 10


def test_digest_is_equal_for_equal_histories_and_differs_otherwise() -> None:
    from state_machine.commands import Entry, encode_entry

    entries = [
        encode_entry(Entry(1000, [CreateQueue("q", QueueConfig())])),
        encode_entry(Entry(1001, [Enqueue("q", [NewMessage("m1", b"a", {}, 0, None, b"")])])),
    ]
    a, b = QueueStateMachine(MemoryKV()), QueueStateMachine(MemoryKV())
    for i, e in enumerate(entries, start=1):
        a.apply(i, e)
        b.apply(i, e)
    assert a.digest() == b.digest() and a.digest().applied_index == 2
    b.apply(3, encode_entry(Entry(1002, [Receive("q", 1)])))
    assert b.digest().digest != a.digest().digest
