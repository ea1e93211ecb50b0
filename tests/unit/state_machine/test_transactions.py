"""Transactions, receive attempt IDs and remembered acks: one small explicit test per rule."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from state_machine import MemoryKV, QueueStateMachine
from state_machine import keys as k
from state_machine import machine as machine_module
from state_machine.commands import (
    AbortTxn,
    Ack,
    Barrier,
    BeginTxn,
    Command,
    CommitTxn,
    DeleteQueue,
    Enqueue,
    Entry,
    Extend,
    Nack,
    Receive,
    StageTxn,
    Transact,
    TxnOp,
    encode_entry,
    txn_fingerprint,
)
from state_machine.config import (
    DEFAULT_DEDUP_WINDOW_MS,
    MAX_TRANSACTION_ID_LEN,
    MAX_TXN_BYTES,
    MAX_TXN_ITEMS,
    MAX_TXN_OPS,
    MAX_TXN_RETENTION_MS,
    MAX_TXN_TIMEOUT_MS,
    MIN_TXN_RETENTION_MS,
    MIN_TXN_TIMEOUT_MS,
    RECEIVE_ATTEMPT_TTL_MS,
)
from state_machine.kv import WriteSet, prefix_end
from state_machine.records import TXN_DEC, make_receipt
from state_machine.results import (
    Delivery,
    Enqueued,
    EnqueuedMessage,
    ErrorCode,
    Received,
    Rejected,
    Settled,
    SettleOutcome,
    TxnFailure,
    TxnOutcome,
    TxnStatus,
)
from tests.unit.state_machine.test_machine import T0, Node, counts, msg, without_bookkeeping

S = SettleOutcome
RETAIN = 60_000
TIMEOUT = 10_000


@pytest.fixture
def node() -> Node:
    n = Node()
    n.create("q", visibility_timeout_ms=30_000)
    n.create("r", visibility_timeout_ms=30_000)
    return n


def transact(tid: str, *ops: TxnOp, retention: int = RETAIN) -> Transact:
    return Transact(tid, txn_fingerprint(list(ops)), list(ops), retention)


def stage(tid: str, seq: int, *ops: TxnOp) -> StageTxn:
    return StageTxn(tid, seq, txn_fingerprint(list(ops)), list(ops))


def outcome(node: Node, now: int, op: Command) -> TxnOutcome:
    result = node.one(now, op)
    assert isinstance(result, TxnOutcome), result
    return result


def leased(node: Node, queue: str, *bodies: bytes, now: int = T0) -> list[Delivery]:
    node.enqueue(queue, *(msg(b) for b in bodies), now=now)
    got = node.receive(queue, now, n=len(bodies)).messages
    assert [d.body for d in got] == list(bodies)
    return got


def tagged(node: Node, tag: bytes) -> list[bytes]:
    return [key for key, _ in node.kv.scan(tag, prefix_end(tag))]


def raw_status(node: Node, tid: str) -> str | None:
    raw = node.kv.get(k.txn(tid))
    return None if raw is None else TXN_DEC.decode(raw).status


# one-shot transactions


def test_a_transaction_applies_every_op_together_and_is_recorded(node: Node) -> None:
    a, b = leased(node, "q", b"a", b"b")
    applied = node.apply(
        T0 + 1,
        transact("t1", Enqueue("r", [msg(b"out", mid="o1")]), Ack("q", [a.receipt]), Nack("q", [b.receipt])),
    )
    (result,) = applied.results
    assert result == TxnOutcome(
        "t1",
        TxnStatus.COMMITTED,
        decided_index=node.index,
        results=[Enqueued([EnqueuedMessage("o1", 1)]), Settled([S.ACKED]), Settled([S.NACKED])],
        expires_at_ms=T0 + 1 + RETAIN,
    )
    assert applied.woken == {"q", "r"}
    assert node.counts("q") == counts(ready=1, enq=2, acked=1)
    assert node.counts("r") == counts(ready=1, enq=1)
    assert node.sm.transaction("t1") == result


def test_a_retry_with_the_same_fingerprint_returns_the_recorded_outcome_and_does_nothing(node: Node) -> None:
    (a,) = leased(node, "q", b"a")
    ops: list[TxnOp] = [Enqueue("r", [msg(b"out", mid="o1")]), Ack("q", [a.receipt])]
    first = outcome(node, T0 + 1, Transact("t1", txn_fingerprint(ops), ops, RETAIN))
    before = without_bookkeeping(node.kv.items())
    retry_ops: list[TxnOp] = [Enqueue("r", [msg(b"out", mid="a-new-id")]), Ack("q", [a.receipt])]
    again = outcome(node, T0 + 5, Transact("t1", txn_fingerprint(retry_ops), retry_ops, RETAIN))
    assert again == msgspec.structs.replace(first, duplicate=True)
    assert without_bookkeeping(node.kv.items()) == before
    assert node.counts("r") == counts(ready=1, enq=1)


def test_a_reused_transaction_id_with_other_ops_is_a_conflict(node: Node) -> None:
    outcome(node, T0, transact("t1", Enqueue("r", [msg(b"x")])))
    r = node.rejected(T0, transact("t1", Enqueue("r", [msg(b"y")])))
    assert (r.code, r.field) == (ErrorCode.TRANSACTION_CONFLICT, "transaction_id")
    assert node.counts("r") == counts(ready=1, enq=1)


def test_one_stale_receipt_changes_nothing_at_all(node: Node) -> None:
    a, b = leased(node, "q", b"a", b"b")
    node.settle(T0, Ack("q", [b.receipt]))
    stale = make_receipt(node.qid("q"), a.seq, a.delivery_count + 1)
    twin = Node()
    twin.create("q", visibility_timeout_ms=30_000)
    twin.create("r", visibility_timeout_ms=30_000)
    leased(twin, "q", b"a", b"b")
    twin.settle(T0, Ack("q", [b.receipt]))
    applied = node.apply(T0 + 1, transact("t1", Enqueue("r", [msg(b"out")]), Ack("q", [a.receipt, stale])))
    twin.apply(T0 + 1, Barrier())
    assert applied.results == [
        TxnOutcome(
            "t1",
            TxnStatus.ABORTED,
            decided_index=node.index,
            failures=[TxnFailure(1, "stale", applied.results[0].failures[0].detail, "ops[1].receipts[1]")],  # type: ignore[union-attr]
            reason="preconditions",
        )
    ]
    assert applied.woken == frozenset()
    # byte for byte the state of a machine that applied a barrier instead
    assert node.sm.digest() == twin.sm.digest()
    assert node.sm.transaction("t1") is None  # not recorded
    assert node.counts("q") == counts(leased=1, enq=2, acked=1)


def test_every_failing_op_is_named(node: Node) -> None:
    node.create("small", max_message_bytes=2, max_length=1)
    (a,) = leased(node, "q", b"a")
    node.settle(T0, Ack("q", [a.receipt]))
    (b,) = leased(node, "q", b"b")
    result = outcome(
        node,
        T0 + 1,
        transact(
            "t1",
            Enqueue("nope", [msg(b"x")]),  # 0: queue not found
            Enqueue("small", [msg(b"ok"), msg(b"big")]),  # 1: too large
            Ack("q", [a.receipt, "junk", b.receipt]),  # 2: already acked, invalid, fine
            Extend("q", [b.receipt], 0),  # 3: out of range
            Nack("r", [b.receipt]),  # 4: another queue's receipt
            Enqueue("small", [msg(b"1")]),  # 5: fine
        ),
    )
    assert (result.status, result.reason, result.results) == (TxnStatus.ABORTED, "preconditions", [])
    assert [(f.op, f.code, f.field) for f in result.failures] == [
        (0, "queue_not_found", "ops[0]"),
        (1, "message_too_large", "ops[1].messages[1].body"),
        (2, "already_acked", "ops[2].receipts[0]"),
        (2, "invalid", "ops[2].receipts[1]"),
        (3, "invalid_argument", "ops[3].visibility_timeout_s"),
        (4, "invalid", "ops[4].receipts[0]"),
    ]
    assert all(f.detail for f in result.failures)
    assert node.counts("q") == counts(leased=1, enq=2, acked=1)
    assert node.counts("small") == counts()


def test_ops_see_the_effects_of_the_ones_before_them(node: Node) -> None:
    node.create("one", max_length=1)
    (a,) = leased(node, "q", b"a")
    # the second ack of the same receipt sees the first: the whole transaction fails
    result = outcome(node, T0, transact("t1", Ack("q", [a.receipt]), Ack("q", [a.receipt])))
    assert [(f.op, f.code) for f in result.failures] == [(1, "already_acked")]
    result = outcome(node, T0, transact("t2", Enqueue("one", [msg(b"x")]), Enqueue("one", [msg(b"y")])))
    assert [(f.op, f.code) for f in result.failures] == [(1, "queue_full")]
    assert node.counts("q") == counts(leased=1, enq=1) and node.counts("one") == counts()


def test_a_failed_transaction_may_be_retried_and_commit_later(node: Node) -> None:
    ops: list[TxnOp] = [Enqueue("later", [msg(b"x")])]
    first = outcome(node, T0, Transact("t1", txn_fingerprint(ops), ops, RETAIN))
    assert first.status == TxnStatus.ABORTED and first.expires_at_ms == 0
    node.create("later")
    assert outcome(node, T0 + 1, Transact("t1", txn_fingerprint(ops), ops, RETAIN)).status == TxnStatus.COMMITTED


def test_nack_to_the_dead_letter_queue_and_extend_succeed_inside_a_transaction(node: Node) -> None:
    node.create("dl")
    node.create("src", max_deliveries=1, dead_letter_queue="dl")
    (a,) = leased(node, "src", b"a")
    (b,) = leased(node, "q", b"b")
    result = outcome(node, T0, transact("t1", Nack("src", [a.receipt]), Extend("q", [b.receipt], 5000)))
    assert result.results == [Settled([S.DEAD_LETTERED]), Settled([S.EXTENDED])]
    assert node.counts("dl") == counts(ready=1, enq=1)


@pytest.mark.parametrize(
    ("op", "field"),
    [
        (Transact("t", b"", [], RETAIN), "ops"),
        (Transact("t", b"", [Ack("q", ["r"])] * (MAX_TXN_OPS + 1), RETAIN), "ops"),
        (Transact("t", b"", [Ack("q", ["r"] * 600), Ack("q", ["r"] * (MAX_TXN_ITEMS - 599))], RETAIN), "ops"),
        (Transact("", b"", [Ack("q", ["r"])], RETAIN), "transaction_id"),
        (Transact("x" * (MAX_TRANSACTION_ID_LEN + 1), b"", [Ack("q", ["r"])], RETAIN), "transaction_id"),
        (Transact("t", b"", [Ack("q", ["r"])], MIN_TXN_RETENTION_MS - 1), "retention_s"),
        (Transact("t", b"", [Ack("q", ["r"])], MAX_TXN_RETENTION_MS + 1), "retention_s"),
        (BeginTxn("t", MIN_TXN_TIMEOUT_MS - 1, RETAIN), "timeout_s"),
        (BeginTxn("t", MAX_TXN_TIMEOUT_MS + 1, RETAIN), "timeout_s"),
        (BeginTxn("t", TIMEOUT, 0), "retention_s"),
        (BeginTxn("", TIMEOUT, RETAIN), "transaction_id"),
        (StageTxn("t", 0, b"", [Ack("q", ["r"])]), "stage_seq"),
        (StageTxn("t", 1, b"", []), "ops"),
        (StageTxn("", 1, b"", [Ack("q", ["r"])]), "transaction_id"),
        (CommitTxn(""), "transaction_id"),
        (AbortTxn("x" * (MAX_TRANSACTION_ID_LEN + 1)), "transaction_id"),
    ],
)
def test_out_of_range_transaction_arguments_name_their_field(node: Node, op: Command, field: str) -> None:
    before = without_bookkeeping(node.kv.items())
    r = node.rejected(T0, op)
    assert (r.code, r.field) == (ErrorCode.INVALID_ARGUMENT, field)
    assert without_bookkeeping(node.kv.items()) == before


def test_the_limits_themselves_are_accepted(node: Node) -> None:
    tid = "x" * MAX_TRANSACTION_ID_LEN
    ops: list[TxnOp] = [Extend("q", ["junk"], 10)] * MAX_TXN_OPS
    assert outcome(node, T0, Transact(tid, b"", ops, MAX_TXN_RETENTION_MS)).reason == "preconditions"
    assert outcome(node, T0, BeginTxn(tid, MAX_TXN_TIMEOUT_MS, MIN_TXN_RETENTION_MS)).status == TxnStatus.PENDING
    assert outcome(node, T0, BeginTxn("y", MIN_TXN_TIMEOUT_MS, MAX_TXN_RETENTION_MS)).status == TxnStatus.PENDING


def test_a_committed_record_is_forgotten_after_its_retention_and_the_id_can_be_used_again(node: Node) -> None:
    outcome(node, T0, transact("t1", Enqueue("r", [msg(b"x")]), retention=5000))
    assert node.sm.transaction("t1") is not None
    node.apply(T0 + 4999, Barrier())
    assert node.sm.transaction("t1") is not None and raw_status(node, "t1") == "committed"
    node.apply(T0 + 5000, Barrier())
    assert node.sm.transaction("t1") is None
    assert tagged(node, b"J") == [] and tagged(node, b"W") == []
    again = outcome(node, T0 + 5001, transact("t1", Enqueue("r", [msg(b"other")])))
    assert (again.status, again.duplicate) == (TxnStatus.COMMITTED, False)
    assert node.counts("r") == counts(ready=2, enq=2)


def test_an_expired_record_not_yet_swept_is_already_forgotten(node: Node, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(machine_module, "TXN_SWEEP_LIMIT", 0)
    outcome(node, T0, transact("t1", Enqueue("r", [msg(b"x")]), retention=5000))
    node.apply(T0 + 6000, Barrier())
    assert raw_status(node, "t1") == "committed"  # still stored
    assert node.sm.transaction("t1") is None
    assert outcome(node, T0 + 6000, transact("t1", Enqueue("r", [msg(b"y")]))).duplicate is False
    assert len(tagged(node, b"W")) == 1  # the old timer went with the old record


# interactive transactions


def test_begin_stage_commit(node: Node) -> None:
    (a,) = leased(node, "q", b"a")
    begun = outcome(node, T0, BeginTxn("t", TIMEOUT, RETAIN))
    assert begun == TxnOutcome("t", TxnStatus.PENDING, expires_at_ms=T0 + TIMEOUT)
    assert outcome(node, T0 + 1, stage("t", 1, Enqueue("r", [msg(b"x", mid="m1")]))).staged_ops == 1
    staged = outcome(node, T0 + 2, stage("t", 2, Ack("q", [a.receipt]), Enqueue("r", [msg(b"y", mid="m2")])))
    assert (staged.status, staged.staged_ops, staged.duplicate) == (TxnStatus.PENDING, 3, False)
    applied = node.apply(T0 + 3, CommitTxn("t"))
    assert applied.results == [
        TxnOutcome(
            "t",
            TxnStatus.COMMITTED,
            decided_index=node.index,
            results=[
                Enqueued([EnqueuedMessage("m1", 1)]),
                Settled([S.ACKED]),
                Enqueued([EnqueuedMessage("m2", 2)]),
            ],
            expires_at_ms=T0 + 3 + RETAIN,
            staged_ops=3,
        )
    ]
    assert applied.woken == {"r"}
    assert [d.body for d in node.receive("r", T0 + 4, n=5).messages] == [b"x", b"y"]
    assert tagged(node, b"S") == []  # staged ops are dropped once decided


def test_staged_messages_are_invisible_and_do_not_count(node: Node) -> None:
    node.create("one", max_length=1)
    outcome(node, T0, BeginTxn("t", TIMEOUT, RETAIN))
    outcome(node, T0, stage("t", 1, Enqueue("one", [msg(b"staged")])))
    assert node.counts("one") == counts()
    assert node.receive("one", T0).messages == []
    node.enqueue("one", msg(b"direct"))  # the staged message takes no room
    # at commit the queue is full: the transaction aborts
    result = outcome(node, T0 + 1, CommitTxn("t"))
    assert (result.status, result.reason) == (TxnStatus.ABORTED, "preconditions")
    assert [(f.op, f.code) for f in result.failures] == [(0, "queue_full")]


def test_a_repeated_begin_returns_the_transaction_as_it_is(node: Node) -> None:
    first = outcome(node, T0, BeginTxn("t", TIMEOUT, RETAIN))
    again = outcome(node, T0 + 5, BeginTxn("t", 99_000, RETAIN))
    assert again == msgspec.structs.replace(first, duplicate=True)  # the original deadline stands
    outcome(node, T0 + 6, stage("t", 1, Enqueue("r", [msg(b"x")])))
    committed = outcome(node, T0 + 7, CommitTxn("t"))
    assert outcome(node, T0 + 8, BeginTxn("t", TIMEOUT, RETAIN)) == msgspec.structs.replace(committed, duplicate=True)


def test_begin_with_the_id_of_a_one_shot_transaction(node: Node) -> None:
    outcome(node, T0, transact("t", Enqueue("r", [msg(b"x")])))
    r = node.rejected(T0, BeginTxn("t", TIMEOUT, RETAIN))
    assert (r.code, r.field) == (ErrorCode.TRANSACTION_EXISTS, "transaction_id")


def test_transact_with_the_id_of_an_interactive_transaction(node: Node) -> None:
    outcome(node, T0, BeginTxn("t", TIMEOUT, RETAIN))
    r = node.rejected(T0, transact("t", Enqueue("r", [msg(b"x")])))
    assert (r.code, r.field) == (ErrorCode.TRANSACTION_CONFLICT, "transaction_id")
    outcome(node, T0, AbortTxn("t"))
    assert node.rejected(T0, transact("t", Enqueue("r", [msg(b"x")]))).code == ErrorCode.TRANSACTION_CONFLICT


def test_stage_numbers(node: Node) -> None:
    outcome(node, T0, BeginTxn("t", TIMEOUT, RETAIN))
    first = outcome(node, T0, stage("t", 1, Enqueue("r", [msg(b"x", mid="m1")])))
    # a retried stage call (new message IDs, same payload): a no-op
    again = outcome(node, T0 + 1, stage("t", 1, Enqueue("r", [msg(b"x", mid="m-retry")])))
    assert again == msgspec.structs.replace(first, duplicate=True) and again.staged_ops == 1
    r = node.rejected(T0 + 1, stage("t", 1, Enqueue("r", [msg(b"other")])))
    assert (r.code, r.field) == (ErrorCode.TRANSACTION_CONFLICT, "stage_seq")
    r = node.rejected(T0 + 1, stage("t", 3, Enqueue("r", [msg(b"y")])))
    assert (r.code, r.field) == (ErrorCode.INVALID_ARGUMENT, "stage_seq")
    assert outcome(node, T0 + 1, stage("t", 2, Enqueue("r", [msg(b"y")]))).staged_ops == 2
    result = outcome(node, T0 + 2, CommitTxn("t"))
    assert [r.messages[0].message_id for r in result.results if isinstance(r, Enqueued)] == ["m1", "id-y"]
    assert node.counts("r") == counts(ready=2, enq=2)


def test_staged_ops_are_bounded_over_all_stage_calls(node: Node) -> None:
    outcome(node, T0, BeginTxn("t", TIMEOUT, RETAIN))
    outcome(node, T0, StageTxn("t", 1, b"1", [Ack("q", ["r"])] * (MAX_TXN_OPS - 1)))
    r = node.rejected(T0, StageTxn("t", 2, b"2", [Ack("q", ["r"])] * 2))
    assert (r.code, r.field) == (ErrorCode.INVALID_ARGUMENT, "ops")
    assert outcome(node, T0, StageTxn("t", 2, b"2", [Ack("q", ["r"])])).staged_ops == MAX_TXN_OPS
    outcome(node, T0, BeginTxn("u", TIMEOUT, RETAIN))
    outcome(node, T0, StageTxn("u", 1, b"1", [Ack("q", ["r"] * (MAX_TXN_ITEMS - 1))]))
    r = node.rejected(T0, StageTxn("u", 2, b"2", [Ack("q", ["r", "s"])]))
    assert (r.code, r.field) == (ErrorCode.INVALID_ARGUMENT, "ops")


def test_staged_bytes_are_bounded_over_all_stage_calls(node: Node) -> None:
    """An interactive commit applies everything staged in one entry: its bytes are bounded like a request's."""
    half = b"x" * (MAX_TXN_BYTES // 2)
    outcome(node, T0, BeginTxn("t", TIMEOUT, RETAIN))
    outcome(node, T0, stage("t", 1, Enqueue("r", [msg(half)])))
    outcome(node, T0, stage("t", 2, Enqueue("r", [msg(half)])))
    r = node.rejected(T0, stage("t", 3, Enqueue("r", [msg(b"one byte too many")])))
    assert (r.code, r.field) == (ErrorCode.INVALID_ARGUMENT, "ops") and "bytes" in r.detail
    pending = node.sm.transaction("t")
    assert pending is not None and (pending.status, pending.staged_ops) == (TxnStatus.PENDING, 2)


def test_unknown_transactions(node: Node) -> None:
    for op in (stage("nope", 1, Ack("q", ["r"])), CommitTxn("nope"), AbortTxn("nope")):
        r = node.rejected(T0, op)
        assert (r.code, r.field) == (ErrorCode.TRANSACTION_NOT_FOUND, "transaction_id"), op
    assert node.sm.transaction("nope") is None


def test_commit_is_idempotent_and_a_committed_transaction_takes_nothing_more(node: Node) -> None:
    outcome(node, T0, BeginTxn("t", TIMEOUT, RETAIN))
    outcome(node, T0, stage("t", 1, Enqueue("r", [msg(b"x")])))
    committed = outcome(node, T0 + 1, CommitTxn("t"))
    before = without_bookkeeping(node.kv.items())
    assert outcome(node, T0 + 2, CommitTxn("t")) == msgspec.structs.replace(committed, duplicate=True)
    for op in (stage("t", 2, Enqueue("r", [msg(b"y")])), stage("t", 1, Enqueue("r", [msg(b"x")])), AbortTxn("t")):
        r = node.rejected(T0 + 2, op)
        assert (r.code, r.field) == (ErrorCode.TRANSACTION_NOT_PENDING, "transaction_id"), op
    assert without_bookkeeping(node.kv.items()) == before
    assert node.counts("r") == counts(ready=1, enq=1)


def test_a_commit_whose_preconditions_fail_is_recorded_as_aborted(node: Node) -> None:
    (a,) = leased(node, "q", b"a")
    outcome(node, T0, BeginTxn("t", TIMEOUT, RETAIN))
    outcome(node, T0, stage("t", 1, Enqueue("r", [msg(b"x")])))
    outcome(node, T0, stage("t", 2, Ack("q", [a.receipt])))
    node.settle(T0 + 1, Nack("q", [a.receipt]))  # the receipt goes stale before the commit
    before = without_bookkeeping(node.kv.items())
    applied = node.apply(T0 + 2, CommitTxn("t"))
    (result,) = applied.results
    assert isinstance(result, TxnOutcome)
    assert (result.status, result.reason, result.decided_index) == (TxnStatus.ABORTED, "preconditions", node.index)
    assert [(f.op, f.code, f.field) for f in result.failures] == [(1, "stale", "ops[1].receipts[0]")]
    assert result.expires_at_ms == T0 + 2 + RETAIN and result.staged_ops == 2
    assert node.counts("r") == counts() and applied.woken == frozenset()
    assert node.sm.transaction("t") == result
    # a retried commit gets the same answer
    assert outcome(node, T0 + 3, CommitTxn("t")) == msgspec.structs.replace(result, duplicate=True)
    r = node.rejected(T0 + 3, stage("t", 3, Enqueue("r", [msg(b"x")])))
    assert r.code == ErrorCode.TRANSACTION_NOT_PENDING
    # only the record changed: the queues are untouched, the staged ops are gone
    after = without_bookkeeping(node.kv.items())
    assert [key for key, _ in after if key[:1] not in b"JWS"] == [key for key, _ in before if key[:1] not in b"JWS"]


def test_abort(node: Node) -> None:
    outcome(node, T0, BeginTxn("t", TIMEOUT, RETAIN))
    outcome(node, T0, stage("t", 1, Enqueue("r", [msg(b"x")])))
    aborted = outcome(node, T0 + 1, AbortTxn("t"))
    assert aborted == TxnOutcome(
        "t", TxnStatus.ABORTED, decided_index=node.index, reason="aborted", expires_at_ms=T0 + 1 + RETAIN, staged_ops=1
    )
    assert outcome(node, T0 + 2, AbortTxn("t")) == msgspec.structs.replace(aborted, duplicate=True)
    for op in (CommitTxn("t"), stage("t", 2, Enqueue("r", [msg(b"y")]))):
        r = node.rejected(T0 + 2, op)
        assert (r.code, r.field) == (ErrorCode.TRANSACTION_NOT_PENDING, "transaction_id")
    assert node.counts("r") == counts()
    assert tagged(node, b"S") == []


def test_abort_of_a_committed_transaction_is_refused(node: Node) -> None:
    outcome(node, T0, transact("t", Enqueue("r", [msg(b"x")])))
    r = node.rejected(T0, AbortTxn("t"))
    assert (r.code, r.field) == (ErrorCode.TRANSACTION_NOT_PENDING, "transaction_id")
    assert outcome(node, T0, CommitTxn("t")).duplicate  # committing a committed one-shot: its outcome


# timeouts


def timed_out(staged: int, deadline: int, retain: int = RETAIN) -> TxnOutcome:
    return TxnOutcome(
        "t", TxnStatus.ABORTED, reason="timeout", expires_at_ms=deadline + retain, staged_ops=staged, duplicate=False
    )


def test_the_sweep_aborts_a_transaction_at_its_deadline(node: Node) -> None:
    outcome(node, T0, BeginTxn("t", TIMEOUT, RETAIN))
    outcome(node, T0, stage("t", 1, Enqueue("r", [msg(b"x")])))
    node.apply(T0 + TIMEOUT - 1, Barrier())
    assert raw_status(node, "t") == "pending" and node.sm.transaction("t") is not None
    node.apply(T0 + TIMEOUT, Barrier())  # deadline <= clock: aborted by the sweep, before any op
    assert raw_status(node, "t") == "aborted"
    assert tagged(node, b"S") == []
    assert node.sm.transaction("t") == timed_out(1, T0 + TIMEOUT)
    assert node.counts("r") == counts()


def test_a_commit_after_the_deadline_is_aborted_and_applies_nothing(node: Node) -> None:
    outcome(node, T0, BeginTxn("t", TIMEOUT, RETAIN))
    outcome(node, T0, stage("t", 1, Enqueue("r", [msg(b"x")])))
    result = outcome(node, T0 + TIMEOUT, CommitTxn("t"))
    assert result == msgspec.structs.replace(timed_out(1, T0 + TIMEOUT), duplicate=True)
    assert node.counts("r") == counts()
    assert outcome(node, T0 + TIMEOUT + 1, CommitTxn("t")) == result  # and again
    assert outcome(node, T0 + TIMEOUT + 1, AbortTxn("t")) == result
    r = node.rejected(T0 + TIMEOUT + 1, stage("t", 2, Enqueue("r", [msg(b"y")])))
    assert r.code == ErrorCode.TRANSACTION_NOT_PENDING and "timeout" in r.detail


def test_timeouts_are_decided_lazily_when_the_sweep_has_not_got_there(
    node: Node, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(machine_module, "TXN_SWEEP_LIMIT", 0)
    for tid in ("t", "u", "v", "w"):
        outcome(node, T0, BeginTxn(tid, TIMEOUT, RETAIN))
        outcome(node, T0, stage(tid, 1, Enqueue("r", [msg(b"x")])))
    node.apply(T0 + TIMEOUT, Barrier())
    assert [raw_status(node, tid) for tid in "tuvw"] == ["pending"] * 4
    before = node.kv.items()
    assert node.sm.transaction("t") == timed_out(1, T0 + TIMEOUT)  # a read decides it, without writing
    assert node.kv.items() == before
    assert outcome(node, T0 + TIMEOUT, CommitTxn("t")).reason == "timeout"
    assert raw_status(node, "t") == "aborted"  # the commit recorded it
    assert outcome(node, T0 + TIMEOUT, AbortTxn("u")).reason == "timeout"
    assert outcome(node, T0 + TIMEOUT, BeginTxn("v", TIMEOUT, RETAIN)).reason == "timeout"
    assert node.rejected(T0 + TIMEOUT, stage("w", 2, Ack("q", ["r"]))).code == ErrorCode.TRANSACTION_NOT_PENDING
    assert node.counts("r") == counts()
    for tid in "tuvw":
        assert node.sm.transaction(tid) == msgspec.structs.replace(timed_out(1, T0 + TIMEOUT), transaction_id=tid)


def test_the_sweep_is_bounded_and_catches_up(node: Node, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(machine_module, "TXN_SWEEP_LIMIT", 2)
    for i in range(5):
        outcome(node, T0, BeginTxn(f"t{i}", TIMEOUT + i, RETAIN))
    node.apply(T0 + TIMEOUT + 10, Barrier())
    assert [raw_status(node, f"t{i}") for i in range(5)] == ["aborted"] * 2 + ["pending"] * 3  # oldest first
    assert all(node.sm.transaction(f"t{i}").status == TxnStatus.ABORTED for i in range(5))  # type: ignore[union-attr]
    node.apply(T0 + TIMEOUT + 11, Barrier())
    node.apply(T0 + TIMEOUT + 12, Barrier())
    assert [raw_status(node, f"t{i}") for i in range(5)] == ["aborted"] * 5


def test_a_timeout_noticed_after_its_retention_forgets_the_record_at_once(node: Node) -> None:
    outcome(node, T0, BeginTxn("t", TIMEOUT, MIN_TXN_RETENTION_MS))
    outcome(node, T0, stage("t", 1, Enqueue("r", [msg(b"x")])))
    node.apply(T0 + TIMEOUT + MIN_TXN_RETENTION_MS, Barrier())
    assert node.sm.transaction("t") is None
    assert tagged(node, b"J") == tagged(node, b"W") == tagged(node, b"S") == []
    # the ID is free again
    assert outcome(node, T0 + TIMEOUT + MIN_TXN_RETENTION_MS, BeginTxn("t", TIMEOUT, RETAIN)).duplicate is False


def test_a_decided_interactive_record_is_forgotten_after_its_retention(node: Node) -> None:
    outcome(node, T0, BeginTxn("t", TIMEOUT, 5000))
    outcome(node, T0 + 1, AbortTxn("t"))
    node.apply(T0 + 5000, Barrier())
    assert node.sm.transaction("t") is not None
    node.apply(T0 + 5001, Barrier())
    assert node.sm.transaction("t") is None and tagged(node, b"J") == []
    assert node.rejected(T0 + 5001, CommitTxn("t")).code == ErrorCode.TRANSACTION_NOT_FOUND


def test_each_record_has_exactly_one_timer(node: Node) -> None:
    outcome(node, T0, BeginTxn("t", TIMEOUT, RETAIN))
    outcome(node, T0, stage("t", 1, Enqueue("r", [msg(b"x")])))
    assert tagged(node, b"W") == [k.txn_due(T0 + TIMEOUT, "t")]
    outcome(node, T0 + 5, CommitTxn("t"))
    assert tagged(node, b"W") == [k.txn_due(T0 + 5 + RETAIN, "t")]


# acked receipts


def test_already_acked_versus_stale(node: Node) -> None:
    node.create("w", visibility_timeout_ms=100, dedup_window_ms=5000)
    node.enqueue("w", msg(b"a"), msg(b"b"))
    first = node.receive_one("w", T0)
    second = node.receive_one("w", T0 + 100)  # a again, delivery 2
    assert (second.seq, second.delivery_count) == (first.seq, 2)
    assert node.settle(T0 + 101, Ack("w", [second.receipt])) == [S.ACKED]
    assert node.settle(T0 + 102, Ack("w", [second.receipt])) == [S.ALREADY_ACKED]
    assert node.settle(T0 + 102, Nack("w", [second.receipt])) == [S.ALREADY_ACKED]
    assert node.settle(T0 + 102, Extend("w", [second.receipt], 10)) == [S.ALREADY_ACKED]
    assert node.settle(T0 + 102, Ack("w", [first.receipt])) == [S.STALE]  # an earlier delivery: not the ack
    b = node.receive_one("w", T0 + 103)
    node.settle(T0 + 104, Nack("w", [b.receipt]))
    assert node.settle(T0 + 105, Ack("w", [b.receipt])) == [S.STALE]  # nacked, not acked
    # remembered for the queue's dedup window after the ack, then forgotten (and swept)
    assert node.settle(T0 + 101 + 4999, Ack("w", [second.receipt])) == [S.ALREADY_ACKED]
    assert node.settle(T0 + 101 + 5000, Ack("w", [second.receipt])) == [S.STALE]
    assert tagged(node, b"K") == [] and tagged(node, b"E") == []
    assert node.counts("w") == counts(ready=1, enq=2, acked=1)


def test_an_ack_inside_a_transaction_is_remembered_too(node: Node) -> None:
    (a,) = leased(node, "q", b"a")
    outcome(node, T0, transact("t", Ack("q", [a.receipt])))
    assert node.settle(T0 + 1, Ack("q", [a.receipt])) == [S.ALREADY_ACKED]
    result = outcome(node, T0 + 1, transact("u", Ack("q", [a.receipt])))
    assert [(f.op, f.code, f.field) for f in result.failures] == [(0, "already_acked", "ops[0].receipts[0]")]


def test_an_ack_in_an_aborted_transaction_is_not_remembered(node: Node) -> None:
    (a,) = leased(node, "q", b"a")
    outcome(node, T0, transact("t", Ack("q", [a.receipt]), Ack("q", ["junk"])))
    assert tagged(node, b"K") == []
    assert node.settle(T0 + 1, Ack("q", [a.receipt])) == [S.ACKED]


def test_the_expiry_sweep_is_bounded_and_an_expired_ack_is_not_remembered(
    node: Node, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(machine_module, "EXPIRY_SWEEP_LIMIT", 2)
    node.create("w", dedup_window_ms=1000)
    got = leased(node, "w", b"a", b"b", b"c", b"d")
    assert node.settle(T0, Ack("w", [d.receipt for d in got])) == [S.ACKED] * 4
    assert len(tagged(node, b"K")) == 4
    node.apply(T0 + 1000, Barrier())
    assert len(tagged(node, b"K")) == 2  # two are still stored, expired
    assert node.settle(T0 + 1000, Ack("w", [got[3].receipt])) == [S.STALE]
    node.apply(T0 + 1001, Barrier())
    assert tagged(node, b"K") == [] and tagged(node, b"E") == []


# receive attempt IDs


def test_a_retried_receive_returns_the_same_deliveries_and_leases_nothing_new(node: Node) -> None:
    node.enqueue("q", msg(b"a"), msg(b"b"), msg(b"c"))
    first = node.one(T0, Receive("q", 2, None, "att"))
    assert isinstance(first, Received) and [d.body for d in first.messages] == [b"a", b"b"]
    before = without_bookkeeping(node.kv.items())
    again = node.one(T0 + 10, Receive("q", 2, 5000, "att"))
    assert again == first  # same receipts, bodies, delivery counts and lease deadlines
    assert without_bookkeeping(node.kv.items()) == before
    assert node.counts("q") == counts(ready=1, leased=2, enq=3)
    # acking one: the retry returns the other one only
    node.settle(T0 + 11, Ack("q", [first.messages[0].receipt]))
    assert node.one(T0 + 12, Receive("q", 2, None, "att")) == Received([first.messages[1]])
    # an extended lease is returned with its new deadline
    node.settle(T0 + 13, Extend("q", [first.messages[1].receipt], 90_000))
    retried = node.one(T0 + 14, Receive("q", 2, None, "att"))
    assert isinstance(retried, Received) and retried.messages[0].lease_expires_at_ms == T0 + 13 + 90_000
    assert retried.messages[0].receipt == first.messages[1].receipt


def test_when_nothing_of_the_first_attempt_is_leased_a_retry_receives_afresh(node: Node) -> None:
    node.enqueue("q", msg(b"a"), msg(b"b"))
    first = node.one(T0, Receive("q", 1, 100, "att"))
    assert isinstance(first, Received) and [d.body for d in first.messages] == [b"a"]
    node.settle(T0 + 1, Ack("q", [first.messages[0].receipt]))
    second = node.one(T0 + 2, Receive("q", 1, 100, "att"))
    assert isinstance(second, Received) and [d.body for d in second.messages] == [b"b"]
    # the record was replaced: a retry now returns b
    assert node.one(T0 + 3, Receive("q", 1, 100, "att")) == second
    # b's lease runs out: the retry leases afresh (b again, delivery 2)
    third = node.one(T0 + 102, Receive("q", 1, 100, "att"))
    assert isinstance(third, Received) and [(d.body, d.delivery_count) for d in third.messages] == [(b"b", 2)]


def test_an_attempt_that_got_nothing_is_not_recorded(node: Node) -> None:
    empty = node.one(T0, Receive("q", 1, None, "att"))
    assert empty == Received([], next_visible_at_ms=None)
    assert tagged(node, b"A") == []
    node.enqueue("q", msg(b"a"))
    got = node.one(T0 + 1, Receive("q", 1, None, "att"))
    assert isinstance(got, Received) and [d.body for d in got.messages] == [b"a"]
    assert len(tagged(node, b"A")) == 1


def test_an_attempt_that_finds_nothing_new_forgets_the_old_record(node: Node) -> None:
    node.enqueue("q", msg(b"a"))
    first = node.one(T0, Receive("q", 1, None, "att"))
    assert isinstance(first, Received)
    node.settle(T0, Ack("q", [first.messages[0].receipt]))
    assert node.one(T0 + 1, Receive("q", 1, None, "att")) == Received([], next_visible_at_ms=None)
    assert tagged(node, b"A") == []
    assert tagged(node, b"E") == [k.expiry(T0 + DEFAULT_DEDUP_WINDOW_MS, k.acked(node.qid("q"), 1))]


def test_attempt_records_expire(node: Node) -> None:
    node.enqueue("q", msg(b"a"), msg(b"b"))
    first = node.one(T0, Receive("q", 1, 3600 * 1000, "att"))
    assert isinstance(first, Received)
    late = T0 + RECEIVE_ATTEMPT_TTL_MS
    node.apply(late - 1, Barrier())
    assert node.one(late - 1, Receive("q", 1, None, "att")) == first
    fresh = node.one(late, Receive("q", 1, None, "att"))  # same ID after the TTL: a new receive
    assert isinstance(fresh, Received) and [d.body for d in fresh.messages] == [b"b"]
    node.apply(late + RECEIVE_ATTEMPT_TTL_MS, Barrier())
    assert tagged(node, b"A") == []


def test_attempt_ids_belong_to_one_queue(node: Node) -> None:
    node.enqueue("q", msg(b"a"))
    node.enqueue("r", msg(b"b"))
    on_q = node.one(T0, Receive("q", 1, None, "att"))
    on_r = node.one(T0, Receive("r", 1, None, "att"))
    assert isinstance(on_q, Received) and isinstance(on_r, Received)
    assert [d.body for d in on_q.messages + on_r.messages] == [b"a", b"b"]


@pytest.mark.parametrize("attempt", ["", "x" * 129])
def test_an_attempt_id_out_of_range(node: Node, attempt: str) -> None:
    r = node.rejected(T0, Receive("q", 1, None, attempt))
    assert (r.code, r.field) == (ErrorCode.INVALID_ARGUMENT, "receive_attempt_id")


def test_deleting_a_queue_removes_its_attempts_and_acks(node: Node) -> None:
    node.enqueue("q", msg(b"a"), msg(b"b"))
    got = node.one(T0, Receive("q", 2, None, "att"))
    assert isinstance(got, Received)
    node.settle(T0, Ack("q", [got.messages[0].receipt]))
    qid = node.qid("q")
    assert tagged(node, b"A" + k.u64(qid)) and tagged(node, b"K" + k.u64(qid))
    node.one(T0, DeleteQueue("q"))
    assert tagged(node, b"A") == [] and tagged(node, b"K") == []
    node.create("q")
    node.enqueue("q", msg(b"c"))
    again = node.one(T0 + 1, Receive("q", 2, None, "att"))
    assert isinstance(again, Received) and [d.body for d in again.messages] == [b"c"]
    # the expiry entries left behind are swept harmlessly
    node.apply(T0 + 10 * 24 * 3600 * 1000, Barrier())
    assert tagged(node, b"E") == []


# the whole store: snapshots, digests, old entries


def rich_state() -> Node:
    node = Node()
    node.create("q")
    node.enqueue("q", msg(b"a"), msg(b"b"), msg(b"c"))
    got = node.one(T0, Receive("q", 2, None, "att"))
    assert isinstance(got, Received)
    node.settle(T0, Ack("q", [got.messages[0].receipt]))
    outcome(node, T0, transact("one-shot", Enqueue("q", [msg(b"d")])))
    outcome(node, T0, BeginTxn("pending", TIMEOUT, RETAIN))
    outcome(node, T0, stage("pending", 1, Enqueue("q", [msg(b"e")])))
    for tag in (b"K", b"A", b"E", b"J", b"W", b"S"):
        assert tagged(node, tag), tag
    return node


def test_snapshots_and_digests_cover_the_new_keys(tmp_path: Path) -> None:
    node = rich_state()
    path = str(tmp_path / "snap")
    node.sm.dump(path, b"")
    restored = QueueStateMachine(MemoryKV())
    restored.restore(path)
    assert restored.digest() == node.sm.digest()
    for tid in ("one-shot", "pending"):
        assert restored.transaction(tid) == node.sm.transaction(tid) is not None
    # every new kind of key is in the digest: changing any one changes it
    for tag in (b"K", b"A", b"E", b"J", b"W", b"S"):
        other = rich_state()
        key = tagged(other, tag)[0]
        other.kv.commit(WriteSet(writes={key: None}))
        assert other.sm.digest().digest != node.sm.digest().digest, tag
    # and a restored machine goes on exactly like the original
    for sm in (node.sm, restored):
        sm.apply(node.index + 1, _entry(T0 + 1, CommitTxn("pending"), Receive("q", 5, None, "att")))
    assert restored.digest() == node.sm.digest()


def _entry(now: int, *ops: Command) -> bytes:
    return encode_entry(Entry(now, list(ops)))


def test_a_version_1_entry_applies(node: Node) -> None:
    node.enqueue("q", msg(b"a"))
    v1 = b"\x01" + msgspec.msgpack.encode([T0 + 1, [["rc", "q", 1, None]]])
    applied = node.sm.apply(node.index + 1, v1)
    assert applied is not None
    (received,) = applied.results
    assert isinstance(received, Received) and [d.body for d in received.messages] == [b"a"]
    assert tagged(node, b"A") == []


def test_results_are_values_never_exceptions_for_odd_transaction_ids(node: Node) -> None:
    """IDs are arbitrary strings: NULs, prefixes of one another, non-ASCII."""
    for tid in ("t", "t\x00", "t\x00x", "tt", "é" * 128):
        assert outcome(node, T0, BeginTxn(tid, TIMEOUT, RETAIN)).status == TxnStatus.PENDING
        assert outcome(node, T0, stage(tid, 1, Enqueue("r", [msg(tid.encode())]))).staged_ops == 1
    assert outcome(node, T0, CommitTxn("t")).results == [Enqueued([EnqueuedMessage("id-t", 1)])]
    assert [outcome(node, T0, CommitTxn(tid)).status for tid in ("t\x00", "tt")] == [TxnStatus.COMMITTED] * 2
    assert outcome(node, T0, CommitTxn("t\x00x")).staged_ops == 1
    assert node.counts("r") == counts(ready=4, enq=4)


def test_rejected_is_never_recorded(node: Node) -> None:
    before = without_bookkeeping(node.kv.items())
    for op in (stage("x", 1, Ack("q", ["r"])), CommitTxn("x"), AbortTxn("x")):
        assert isinstance(node.one(T0, op), Rejected)
    assert without_bookkeeping(node.kv.items()) == before
