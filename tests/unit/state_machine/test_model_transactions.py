"""Differential test for transactions: QueueStateMachine against the reference model, step by step.

Random one-shot and interactive transactions (with retries of every kind: same request, changed request, stage
calls repeated or skipped), receives with attempt IDs, plain settles and clock jumps across timeouts and
retentions, over three queues. Every result is compared in normal form (``check_applied``), so a retry that is
answered as a duplicate on one side and applied again on the other fails at once. After every step: every
queue and every transaction ID reads the same on both, reads write nothing, and the store holds exactly the
records the model says are alive (no leftovers after timeouts, expiries and commits).
"""

from __future__ import annotations

from collections import Counter

import msgspec
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from state_machine import Entry, MemoryKV, QueueStateMachine, encode_entry
from state_machine.commands import (
    AbortTxn,
    Ack,
    BeginTxn,
    Command,
    CommitTxn,
    CreateQueue,
    Enqueue,
    Extend,
    Nack,
    NewMessage,
    Receive,
    StageTxn,
    Transact,
    TxnOp,
    txn_fingerprint,
)
from state_machine.config import QueueConfig
from tests.unit.state_machine.reference_model import (
    ReferenceModel,
    check_applied,
    new_message,
    normalise_info,
    normalise_txn,
    receipts_of,
)

T0 = 1_000_000
QUEUES = ("q1", "q2", "dl")
TXN_IDS = ("t1", "t2", "t3", "t4", "t5", "t6")
ATTEMPT_IDS = ("a1", "a2")
STEPS = (50, 200, 500, 1000, 1000, 2500)
COMMAND_KINDS = (
    *("transact", "transact", "begin", "begin", "stage", "stage", "stage", "commit", "commit", "abort"),
    *("enqueue", "enqueue", "receive", "receive", "receive", "settle"),
)


class TransactionsVersusModel(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.kv = MemoryKV()
        self.real = QueueStateMachine(self.kv)
        self.model = ReferenceModel()
        self.index = 0
        self.now = T0
        self.issued: list[tuple[str, str]] = []
        self.message_ids = 0
        #: The ops of the last Transact sent per ID.
        self.sent: dict[str, list[TxnOp]] = {}

    def apply(self, ops: list[Command]) -> None:
        self.index += 1
        real = self.real.apply(self.index, encode_entry(Entry(self.now, ops)))
        expected = self.model.apply(self.index, self.now, ops)
        check_applied(real, expected, self.model)
        assert real is not None
        for op, result in zip(ops, real.results, strict=True):
            if isinstance(op, Receive):
                self.issued.extend((r, op.queue) for r in receipts_of(result))

    # drawing
    def fresh_ids(self, ops: list[TxnOp]) -> list[TxnOp]:
        """The same request as a retrying client sends it: new message IDs, same payloads."""
        out: list[TxnOp] = []
        for op in ops:
            if isinstance(op, Enqueue):
                messages = []
                for m in op.messages:
                    self.message_ids += 1
                    messages.append(msgspec.structs.replace(m, message_id=f"m{self.message_ids}"))
                out.append(Enqueue(op.queue, messages))
            else:
                out.append(op)
        return out

    def draw_receipts(self, data: st.DataObject) -> tuple[str, list[str]]:
        """A queue and receipts for it: mostly recent ones of that queue, sometimes old, foreign or junk."""
        recent = self.issued[-6:]
        live = [(r, q) for r, q in recent if self.is_live(r, q)]
        how = data.draw(st.sampled_from(("live",) * 6 + ("recent", "recent", "any", "junk")))
        if how == "junk" or not self.issued:
            return data.draw(st.sampled_from(QUEUES)), ["junk"]
        pool = live if how == "live" and live else recent if how != "any" else self.issued
        receipt, queue = data.draw(st.sampled_from(pool))
        receipts = [receipt]
        same_queue = [r for r, q in recent if q == queue and r != receipt]
        if same_queue and data.draw(st.integers(0, 3)) == 0:
            receipts.append(data.draw(st.sampled_from(same_queue)))
        if data.draw(st.integers(0, 9)) == 0:
            queue = data.draw(st.sampled_from(QUEUES))  # perhaps another queue's receipts
        return queue, receipts

    def is_live(self, receipt: str, queue: str) -> bool:
        """The model says this receipt names a running lease."""
        q = self.model.queues.get(queue)
        rid = self.model.receipts.get(receipt)
        if q is None or rid is None or rid[0] != q.incarnation:
            return False
        m = q.messages.get(rid[1])
        return m is not None and m.state == "leased" and m.delivery_count == rid[2] and m.due_ms > self.model.clock

    def draw_messages(self, data: st.DataObject) -> list[NewMessage]:
        out = []
        for _ in range(data.draw(st.sampled_from((1, 1, 2)))):
            self.message_ids += 1
            out.append(
                new_message(
                    f"m{self.message_ids}",
                    data.draw(st.sampled_from((b"a", b"b", b"a", b"b", b"toolong"))),
                    {},
                    data.draw(st.sampled_from((0, 0, 0, 700))),
                    data.draw(st.sampled_from((None, None, "k1", "k2"))),
                )
            )
        return out

    def draw_txn_op(self, data: st.DataObject) -> TxnOp:
        kind = data.draw(st.sampled_from(("enqueue", "enqueue", "enqueue", "ack", "ack", "nack", "extend")))
        if kind == "enqueue" or (not self.issued and data.draw(st.integers(0, 3))):
            return Enqueue(data.draw(st.sampled_from((*QUEUES, *QUEUES, "q1", "nope"))), self.draw_messages(data))
        queue, receipts = self.draw_receipts(data)
        if kind == "ack":
            return Ack(queue, receipts)
        if kind == "nack":
            return Nack(queue, receipts, data.draw(st.sampled_from((0, 0, 300))))
        return Extend(queue, receipts, data.draw(st.sampled_from((500, 3000))))

    def draw_txn_ops(self, data: st.DataObject) -> list[TxnOp]:
        return [self.draw_txn_op(data) for _ in range(data.draw(st.sampled_from((1, 1, 1, 2, 3))))]

    def draw_command(self, data: st.DataObject) -> Command:
        kind = data.draw(st.sampled_from(COMMAND_KINDS))
        pending = [t for t in TXN_IDS if (v := self.model._txn_view(t)) is not None and v.status == "pending"]
        tid = data.draw(st.sampled_from(TXN_IDS))
        if kind in ("stage", "commit", "abort") and data.draw(st.integers(0, 4)):
            if pending:  # mostly a transaction that can take it
                tid = data.draw(st.sampled_from(pending))
            else:
                kind = "begin"
        if kind == "transact":
            return self.draw_transact(data, tid)
        if kind == "begin":
            return BeginTxn(
                tid, data.draw(st.sampled_from((1000, 2000, 4000))), data.draw(st.sampled_from((1000, 5000)))
            )
        if kind == "stage":
            return self.draw_stage(data, tid)
        if kind == "commit":
            return CommitTxn(tid)
        if kind == "abort":
            return AbortTxn(tid)
        return self.draw_queue_command(data, kind)

    def draw_transact(self, data: st.DataObject, tid: str) -> Command:
        """A one-shot transaction, sometimes a retry of the last one sent under ``tid``."""
        previous = self.sent.get(tid)
        if previous is not None and data.draw(st.booleans()):
            ops = self.fresh_ids(previous)  # a retry
        else:
            ops = self.draw_txn_ops(data)
            self.sent[tid] = ops
        return Transact(tid, txn_fingerprint(ops), ops, data.draw(st.sampled_from((1000, 2000, 6000))))

    def draw_stage(self, data: st.DataObject, tid: str) -> Command:
        """The next stage, a retry of an earlier one, a changed earlier one, or one with a gap."""
        known = self.model.txns.get(tid)
        calls = [] if known is None else [ops for _, ops in known.stages]
        how = data.draw(st.sampled_from(("next", "next", "next", "retry", "changed", "gap")))
        if how in ("retry", "changed") and calls:
            seq = data.draw(st.integers(1, len(calls)))
            ops = self.fresh_ids(calls[seq - 1]) if how == "retry" else self.draw_txn_ops(data)
        else:
            ops = self.draw_txn_ops(data)
            seq = len(calls) + (2 if how == "gap" else 1)
        return StageTxn(tid, seq, txn_fingerprint(ops), ops)

    def draw_queue_command(self, data: st.DataObject, kind: str) -> Command:
        """An enqueue, a receive, or a settle of issued receipts, outside transactions."""
        if kind == "enqueue":
            return Enqueue(data.draw(st.sampled_from(QUEUES)), self.draw_messages(data))
        if kind == "receive":
            return Receive(
                data.draw(st.sampled_from(QUEUES)),
                data.draw(st.sampled_from((1, 2))),
                data.draw(st.sampled_from((None, 800))),
                data.draw(st.sampled_from((None, *ATTEMPT_IDS))),
            )
        queue, receipts = self.draw_receipts(data)
        settles: list[Command] = [Ack(queue, receipts), Nack(queue, receipts), Extend(queue, receipts, 900)]
        return data.draw(st.sampled_from(settles))

    # rules
    @initialize()
    def create_queues(self) -> None:
        self.apply(
            [
                CreateQueue("dl", QueueConfig(visibility_timeout_ms=1000, dedup_window_ms=3000)),
                CreateQueue("q1", QueueConfig(visibility_timeout_ms=2000, dedup_window_ms=4000, max_length=5)),
                CreateQueue(
                    "q2",
                    QueueConfig(
                        visibility_timeout_ms=1500, max_deliveries=2, dead_letter_queue="dl", max_message_bytes=4
                    ),
                ),
            ]
        )

    @rule(data=st.data())
    def step(self, data: st.DataObject) -> None:
        if data.draw(st.integers(0, 4)) == 0:
            self.now += data.draw(st.sampled_from(STEPS))
            self.apply([])
        else:
            self.apply([self.draw_command(data)])

    @rule(data=st.data())
    def several_in_one_entry(self, data: st.DataObject) -> None:
        self.apply([self.draw_command(data) for _ in range(data.draw(st.integers(2, 4)))])

    @rule(data=st.data())
    def retry_the_last_entry_kind_of_request(self, data: st.DataObject) -> None:
        """The same transaction request twice in a row (a client retry after a lost answer)."""
        command = self.draw_command(data)
        self.apply([command])
        if data.draw(st.booleans()):
            self.now += data.draw(st.sampled_from(STEPS))
        self.apply([command])

    # after every step
    @invariant()
    def reads_agree(self) -> None:
        assert self.real.applied_index == self.model.applied and self.real.clock_ms == self.model.clock
        before = self.kv.items()
        for name in QUEUES:
            info = self.real.queue_info(name)
            assert (None if info is None else normalise_info(info)) == self.model.queue_info(name), name
        for tid in TXN_IDS:
            got = self.real.transaction(tid)
            assert (None if got is None else normalise_txn(got)) == self.model.transaction(tid), tid
        assert self.kv.items() == before, "a read wrote to the store"

    @invariant()
    def the_store_holds_exactly_the_live_records(self) -> None:
        m = self.model
        by_tag = Counter(key[:1] for key, _ in self.kv.items())
        live = [t for t in (m._txn_view(tid) for tid in TXN_IDS) if t is not None]
        assert by_tag[b"J"] == by_tag[b"W"] == len(live)
        assert by_tag[b"S"] == sum(len(t.stages) for t in live if t.status == "pending")
        acked = sum(1 for q in m.queues.values() for _, expires in q.acked.values() if m.clock < expires)
        attempts = sum(1 for q in m.queues.values() for _, expires in q.attempts.values() if m.clock < expires)
        assert (by_tag[b"K"], by_tag[b"A"], by_tag[b"E"]) == (acked, attempts, acked + attempts)
        messages = sum(len(q.messages) for q in m.queues.values())
        assert by_tag[b"M"] == messages


TransactionsVersusModel.TestCase.settings = settings(
    max_examples=100,
    stateful_step_count=40,
    derandomize=True,
    database=None,
    deadline=None,
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
    suppress_health_check=[HealthCheck.too_slow],
)
test_transactions_match_model = TransactionsVersusModel.TestCase
