"""Differential test: QueueStateMachine on MemoryKV against the reference model, step by step.

Every step applies one entry to both and compares every result (receipts by the identity they name), the
woken set, the clock and the applied index. After every step it compares what every read reports (queue_info for
every name, and list_queues), checks that reads wrote nothing, and checks that the store holds exactly one record
and one index key per message the model has. One rule targets the only write that names a queue without touching
its timers: deleting a queue whose leases ran out. Receives sometimes carry attempt IDs, and acks are remembered
(``already_acked``); ``test_model_transactions`` covers transactions. The test is derandomized and uses no
example database, so CI runs the same examples every time.
"""

from __future__ import annotations

import base64
import struct
from collections import Counter

from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from state_machine import Entry, MemoryKV, QueueStateMachine, encode_entry
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
)
from state_machine.config import MAX_DELAY_MS, QueueConfig
from tests.unit.state_machine.reference_model import (
    EXAMPLE_CONFIGS,
    EXAMPLE_NAMES,
    ReferenceModel,
    check_applied,
    new_message,
    normalise_info,
    receipts_of,
)

T0 = 1_000_000
INVALID_CONFIGS: tuple[QueueConfig, ...] = (
    QueueConfig(visibility_timeout_ms=0),
    QueueConfig(max_deliveries=2),  # no dead-letter queue
    QueueConfig(max_deliveries=1, dead_letter_queue="nope"),  # does not exist
    QueueConfig(max_deliveries=1, dead_letter_queue="q2"),  # may or may not exist
)
CONFIGS = EXAMPLE_CONFIGS + INVALID_CONFIGS
# Receipts that name nothing: not base64, the wrong length, a future receipt version.
GARBAGE_RECEIPTS = (
    "",
    "garbage",
    "AAAA",
    base64.urlsafe_b64encode(struct.pack(">BQQQ", 2, 1, 1, 1)).decode().rstrip("="),
)
GARBAGE_ENTRIES = (
    bytes((CODEC_VERSION,)),
    bytes((CODEC_VERSION,)) + b"\xc1",
    bytes((CODEC_VERSION,)) + b"\x92\x01",
    bytes((CODEC_VERSION,)) + b"\x92\x01\x91\x92\xa2zz\x00",  # an unknown command tag
    b"\x00" + encode_entry(Entry(0, [Barrier()]))[1:],  # version 0
)

names = st.sampled_from(("q1", "q2", "dl", "q1", "q2", "q1", "dl", "q1", "q3"))
plain_configs = st.sampled_from([c for c in EXAMPLE_CONFIGS if c.dead_letter_queue is None])
dead_lettering_configs = st.sampled_from([c for c in EXAMPLE_CONFIGS if c.dead_letter_queue == "dl"])
stamp_skew = st.sampled_from((0, 0, 0, 0, -40, -400))


class StateMachineVersusModel(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.kv = MemoryKV()
        self.real = QueueStateMachine(self.kv)
        self.model = ReferenceModel()
        self.index = 0
        self.now = T0
        #: Every receipt the real machine issued, with the queue it came from, newest last.
        self.issued: list[tuple[str, str]] = []
        self.message_ids = 0

    # helpers
    def apply(self, ops: list[Command], skew: int = 0) -> None:
        self.index += 1
        stamp = self.now + skew
        real = self.real.apply(self.index, encode_entry(Entry(stamp, ops)))
        expected = self.model.apply(self.index, stamp, ops)
        check_applied(real, expected, self.model)
        assert real is not None
        for op, result in zip(ops, real.results, strict=True):
            if isinstance(op, Receive):
                self.issued.extend((r, op.queue) for r in receipts_of(result))

    def draw_settle_target(self, data: st.DataObject) -> tuple[str, list[str]]:
        """A queue and receipts for it: mostly recent real ones of that queue, sometimes stale, foreign or junk."""
        recent = self.issued[-8:]
        picks: list[tuple[str, str]] = []
        for _ in range(data.draw(st.sampled_from((1, 1, 1, 2, 3)))):
            source = data.draw(st.sampled_from(("recent", "recent", "recent", "any", "junk")))
            if source == "recent" and recent:
                picks.append(data.draw(st.sampled_from(recent)))
            elif source == "any" and self.issued:
                picks.append(data.draw(st.sampled_from(self.issued)))
            else:
                junk = list(GARBAGE_RECEIPTS) + [r[:-4] for r, _ in recent[-1:]]
                picks.append((data.draw(st.sampled_from(junk)), "q1"))
        name = picks[0][1] if data.draw(st.integers(0, 4)) else data.draw(names)
        return name, [r for r, _ in picks]

    def draw_messages(self, data: st.DataObject) -> list[NewMessage]:
        out = []
        for _ in range(data.draw(st.sampled_from((1, 1, 1, 2, 3)))):
            self.message_ids += 1
            out.append(
                new_message(
                    f"m{self.message_ids}",
                    data.draw(st.sampled_from((b"a", b"b", b"", b"toolong"))),
                    data.draw(st.sampled_from(({}, {"k": "v"}))),
                    data.draw(st.sampled_from((0, 0, 0, 35, 120, -1))),
                    data.draw(st.sampled_from((None, None, "k1", "k2", "k3"))),
                )
            )
        return out

    def draw_op(self, data: st.DataObject) -> Command:
        kind = data.draw(
            st.sampled_from(
                ("enqueue", "receive", "settle", "enqueue", "receive", "settle", "create", "junk", "delete")
            )
        )
        name = data.draw(names)
        if kind == "create":
            return CreateQueue(name, data.draw(st.sampled_from(CONFIGS)))
        if kind == "delete":
            return DeleteQueue(name)
        if kind == "enqueue":
            return Enqueue(name, self.draw_messages(data))
        if kind == "receive":
            return self.draw_receive(data, name)
        if kind == "junk":  # arguments out of range
            junk: list[Command] = [
                Enqueue(name, []),
                Receive(name, 0),
                Receive(name, 1, 0),
                Ack(name, []),
                Nack(name, ["x"], MAX_DELAY_MS + 1),
                Extend(name, ["x"], 0),
            ]
            return data.draw(st.sampled_from(junk))
        return self.draw_settle(data)

    def draw_receive(self, data: st.DataObject, name: str) -> Receive:
        return Receive(
            name,
            data.draw(st.sampled_from((1, 2, 3))),
            data.draw(st.sampled_from((None, 30, 90))),
            data.draw(st.sampled_from((None, None, "a1", "a2", ""))),
        )

    def draw_settle(self, data: st.DataObject) -> Command:
        name, receipts = self.draw_settle_target(data)
        kind = data.draw(st.sampled_from(("ack", "nack", "extend")))
        if kind == "ack":
            return Ack(name, receipts)
        if kind == "nack":
            return Nack(name, receipts, data.draw(st.sampled_from((0, 0, 25, 70))))
        return Extend(name, receipts, data.draw(st.sampled_from((10, 40, 150))))

    # rules
    @initialize(dl=plain_configs, q1=dead_lettering_configs, q2=st.sampled_from(EXAMPLE_CONFIGS[:4]))
    def create_some_queues(self, dl: QueueConfig, q1: QueueConfig, q2: QueueConfig) -> None:
        self.apply([CreateQueue("dl", dl), CreateQueue("q1", q1), CreateQueue("q2", q2)])

    # One rule draws the kind of step itself, with weights that keep queues busy: Hypothesis's swarm testing
    # switches whole rules off per example, and with one rule per command most examples degenerate into a
    # single command repeated.
    @rule(data=st.data())
    def step(self, data: st.DataObject) -> None:
        kind = data.draw(st.sampled_from(("enqueue", "receive", "settle", "advance") * 3 + ("create", "odd")))
        skew = data.draw(stamp_skew)
        if kind == "enqueue":
            self.apply([Enqueue(data.draw(names), self.draw_messages(data))], skew)
        elif kind == "receive":
            self.apply([self.draw_receive(data, data.draw(names))], skew)
        elif kind == "settle":
            self.apply([self.draw_settle(data)], skew)
        elif kind == "create":  # or delete
            name = data.draw(names)
            if data.draw(st.booleans()):
                self.apply([CreateQueue(name, data.draw(st.sampled_from(CONFIGS)))])
            else:
                self.apply([DeleteQueue(name)])
        elif kind == "odd":
            self.odd_entry(data)
        else:
            self.now += data.draw(st.sampled_from((10, 30, 60, 100, 250, 1000, 1)))

    def leased_deletable_queue(self) -> str | None:
        """A queue that could be deleted and has leased messages."""
        for name, q in sorted(self.model.queues.items()):
            in_use = any(other.config.dead_letter_queue == name for other in self.model.queues.values())
            if not in_use and any(m.state == "leased" for m in q.messages.values()):
                return name
        return None

    @precondition(lambda self: self.leased_deletable_queue() is not None)
    @rule(after_all=st.booleans())
    def delete_after_leases_ran_out(self, after_all: bool) -> None:
        """Delete is the one write that names a queue without using it: its lazily kept timers must be right."""
        name = self.leased_deletable_queue()
        assert name is not None
        dues = [m.due_ms for m in self.model.queues[name].messages.values() if m.state == "leased"]
        self.now = max(self.now, max(dues) if after_all else min(dues))
        self.apply([DeleteQueue(name)])

    @rule(data=st.data(), skew=stamp_skew)
    def multi_op_entry(self, data: st.DataObject, skew: int) -> None:
        ops = [self.draw_op(data) for _ in range(data.draw(st.integers(2, 4)))]
        self.apply(ops, skew)

    def odd_entry(self, data: st.DataObject) -> None:
        """A barrier, a stamp from the past, a garbage entry, or a replayed index."""
        kind = data.draw(st.sampled_from(("barrier", "past", "garbage", "replay")))
        if kind == "barrier":
            self.apply([Barrier()])
        elif kind == "past":
            self.apply([Barrier()], -data.draw(st.sampled_from((1, 100, 5000))))
        elif kind == "garbage":
            self.index += 1
            entry = data.draw(st.sampled_from(GARBAGE_ENTRIES))
            check_applied(self.real.apply(self.index, entry), self.model.apply_garbage(self.index), self.model)
        else:
            old = data.draw(st.integers(1, self.index))
            before = self.kv.items()
            replayed = encode_entry(Entry(self.now + 10_000, [DeleteQueue("q1")]))
            assert self.real.apply(old, replayed) is None
            assert self.model.apply(old, self.now + 10_000, [DeleteQueue("q1")]) is None
            assert self.kv.items() == before

    # after every step
    @invariant()
    def reads_agree(self) -> None:
        assert self.real.applied_index == self.model.applied
        assert self.real.clock_ms == self.model.clock
        before = self.kv.items()
        for name in EXAMPLE_NAMES:
            info = self.real.queue_info(name)
            assert (None if info is None else normalise_info(info)) == self.model.queue_info(name), name
        assert [normalise_info(i) for i in self.real.list_queues()] == self.model.list_queues()
        assert self.kv.items() == before, "a read wrote to the store"

    @invariant()
    def nothing_is_left_behind(self) -> None:
        """The store holds one message record and one index key per message the model has, and no more."""
        queues = self.model.queues.values()
        messages = [m for q in queues for m in q.messages.values()]
        by_tag = Counter(key[:1] for key, _ in self.kv.items())
        assert by_tag[b"Q"] == len(self.model.queues)
        assert by_tag[b"M"] == len(messages)
        assert by_tag[b"R"] == sum(1 for m in messages if m.state == "ready")
        assert by_tag[b"T"] == sum(1 for m in messages if m.state != "ready")
        assert by_tag[b"L"] == sum(1 for q in queues if q.config.dead_letter_queue is not None)
        assert by_tag[b"D"] <= sum(len(q.keys) for q in queues)
        # remembered acks and receive attempts: exactly the live ones (every entry sweeps the expired ones)
        now = self.model.clock
        acked = sum(1 for q in queues for _, expires in q.acked.values() if now < expires)
        attempts = sum(1 for q in queues for _, expires in q.attempts.values() if now < expires)
        assert (by_tag[b"K"], by_tag[b"A"]) == (acked, attempts)
        assert by_tag[b"E"] >= acked + attempts  # and the entries of deleted queues, until they expire


StateMachineVersusModel.TestCase.settings = settings(
    max_examples=200,
    stateful_step_count=50,
    derandomize=True,
    database=None,
    deadline=None,
    # No shrinking in CI: a 50-step failure takes Hypothesis's full shrink budget (minutes). To shrink one
    # locally, add Phase.shrink here.
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
    suppress_health_check=[HealthCheck.too_slow],
)
test_state_machine_matches_model = StateMachineVersusModel.TestCase
