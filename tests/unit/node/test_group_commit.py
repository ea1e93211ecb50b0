"""GroupCommitter against a fake ``propose`` that stands in for QueueReplica.propose.

The fake records every proposed entry; the test completes an entry by calling its callback from another thread
(pysyncobj calls it on its tick thread) with what the replica would pass: ``state_machine.machine.AppliedEntry``
from a real QueueStateMachine on MemoryKV, or a failure reason. Each test runs a real event loop (asyncio.run);
waiting is done by polling with a deadline, never by sleeping and hoping.
"""

from __future__ import annotations

import asyncio
import gc
import threading
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from pysyncobj import FAIL_REASON

from api.parse import MAX_RECEIPTS
from raft_queue.node.group_commit import GroupCommitter
from raft_queue.node.raft.failures import failure_for
from state_machine.commands import Ack, Command, CreateQueue, Enqueue, Entry, NewMessage, decode_entry, encode_entry
from state_machine.config import MAX_ATTRIBUTE_LEN, MAX_ATTRIBUTES, QueueConfig
from state_machine.contract import Applied, NoLeader, OutcomeUnknown, Overloaded, ReplicationError
from state_machine.kv import MemoryKV
from state_machine.machine import QueueStateMachine
from state_machine.records import make_receipt
from state_machine.results import (
    Enqueued,
    EnqueuedMessage,
    ErrorCode,
    QueueCreated,
    Rejected,
)

DEADLINE_S = 5.0
FAILURE_REASONS = {k: v for k, v in vars(FAIL_REASON).items() if not k.startswith("_") and k != "SUCCESS"}
Callback = Callable[[Any, int], None]


@dataclass
class Proposal:
    data: bytes
    callback: Callback

    @property
    def entry(self) -> Entry:
        return decode_entry(self.data)

    @property
    def ops(self) -> list[Command]:
        return self.entry.ops


class FakeRaft:
    """Records proposals; ``complete`` applies one on a real state machine and calls back from another thread."""

    def __init__(self, first_index: int = 41) -> None:
        self.machine = QueueStateMachine(MemoryKV())
        self.proposals: list[Proposal] = []
        self._next_index = first_index

    def propose(self, data: bytes, callback: Callback) -> None:
        self.proposals.append(Proposal(data, callback))

    def complete(self, i: int, reason: int = FAIL_REASON.SUCCESS, *, data: bytes | None = None) -> int:
        """Commits proposal i at the next index (or fails it with reason); returns the index used (0 if none)."""
        proposal = self.proposals[i]
        index = 0
        result: Any = None
        if reason == FAIL_REASON.SUCCESS:
            index = self._next_index
            self._next_index += 1
            result = self.machine.apply(index, proposal.data if data is None else data)
        call_from_tick_thread(proposal.callback, result, reason)
        return index


def call_from_tick_thread(callback: Callback, result: Any, reason: int) -> None:
    thread = threading.Thread(target=callback, args=(result, reason), name="fake-pysyncobj-tick")
    thread.start()
    thread.join(DEADLINE_S)
    assert not thread.is_alive()


async def until(condition: Callable[[], bool], what: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + DEADLINE_S
    while not condition():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.001)


async def spin(iterations: int = 10) -> None:
    """Runs the loop a few iterations: enough for anything already scheduled with call_soon to happen."""
    for _ in range(iterations):
        await asyncio.sleep(0)


def run(body: Callable[[], Coroutine[Any, Any, None]]) -> None:
    asyncio.run(body())


def enqueue(message_id: str, queue: str = "q", body: bytes = b"x") -> Enqueue:
    return Enqueue(queue, [NewMessage(message_id, body)])


def create(queue: str = "q") -> CreateQueue:
    return CreateQueue(queue, QueueConfig())


def submit_all(
    committer: GroupCommitter, ops: list[Command], timeout: float = DEADLINE_S
) -> list[asyncio.Task[Applied]]:
    return [asyncio.ensure_future(committer.submit(op, timeout)) for op in ops]


async def gather_outcomes(tasks: list[asyncio.Task[Applied]]) -> list[Applied | BaseException]:
    return list(await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), DEADLINE_S))


def test_ops_submitted_in_one_loop_iteration_share_one_entry() -> None:
    async def body() -> None:
        fake = FakeRaft()
        committer = GroupCommitter(fake.propose, asyncio.get_running_loop())
        ops: list[Command] = [create(), *(enqueue(f"m{i}") for i in range(9))]
        tasks = submit_all(committer, ops)
        await until(lambda: len(fake.proposals) == 1, "the first proposal")
        await spin()
        assert len(fake.proposals) == 1
        assert fake.proposals[0].ops == ops  # submission order
        assert (committer.entries_proposed, committer.ops_proposed) == (1, 10)

        index = fake.complete(0)
        outcomes = await gather_outcomes(tasks)
        assert outcomes[0] == Applied(QueueCreated(created=True), commit_index=index)
        for seq, outcome in enumerate(outcomes[1:], start=1):
            expected = Enqueued([EnqueuedMessage(f"m{seq - 1}", seq)])
            assert outcome == Applied(expected, commit_index=index)

    run(body)


def test_results_come_back_per_op_in_order_with_the_entry_index() -> None:
    async def body() -> None:
        fake = FakeRaft(first_index=41)
        committer = GroupCommitter(fake.propose, asyncio.get_running_loop())
        tasks = submit_all(committer, [create(), enqueue("a"), enqueue("b", queue="missing"), enqueue("c")])
        await until(lambda: len(fake.proposals) == 1, "the proposal")
        assert fake.complete(0) == 41
        created, a, missing, c = await gather_outcomes(tasks)
        assert created == Applied(QueueCreated(created=True), commit_index=41)
        assert a == Applied(Enqueued([EnqueuedMessage("a", 1)]), commit_index=41)
        assert isinstance(missing, Applied) and missing.commit_index == 41
        assert isinstance(missing.result, Rejected) and missing.result.code is ErrorCode.QUEUE_NOT_FOUND
        # A rejected op leaves no trace and does not disturb the ops after it.
        assert c == Applied(Enqueued([EnqueuedMessage("c", 2)]), commit_index=41)

        tasks = submit_all(committer, [enqueue("d")])
        await until(lambda: len(fake.proposals) == 2, "the second proposal")
        assert fake.complete(1) == 42
        assert await gather_outcomes(tasks) == [Applied(Enqueued([EnqueuedMessage("d", 3)]), commit_index=42)]

    run(body)


def test_max_inflight_is_respected_and_waiting_ops_go_out_together() -> None:
    async def body() -> None:
        fake = FakeRaft()
        committer = GroupCommitter(fake.propose, asyncio.get_running_loop(), max_inflight=2)
        first = submit_all(committer, [create()])
        await until(lambda: len(fake.proposals) == 1, "entry 1")
        second = submit_all(committer, [enqueue("a")])
        await until(lambda: len(fake.proposals) == 2, "entry 2")
        waiting = submit_all(committer, [enqueue("b"), enqueue("c"), enqueue("d")])
        await spin()
        assert len(fake.proposals) == 2, "a third entry went out while two were in flight"
        assert not any(t.done() for t in waiting)

        i1 = fake.complete(0)
        await until(lambda: len(fake.proposals) == 3, "entry 3 after entry 1 completed")
        assert fake.proposals[2].ops == [enqueue("b"), enqueue("c"), enqueue("d")]
        assert (committer.entries_proposed, committer.ops_proposed) == (3, 5)
        await spin()
        assert len(fake.proposals) == 3

        i2, i3 = fake.complete(1), fake.complete(2)
        outcomes = await gather_outcomes(first + second)
        assert [o.commit_index for o in outcomes if isinstance(o, Applied)] == [i1, i2]
        outcomes = await gather_outcomes(waiting)
        assert [o.commit_index for o in outcomes if isinstance(o, Applied)] == [i3, i3, i3]

    run(body)


@pytest.mark.parametrize("name", sorted(FAILURE_REASONS))
def test_a_failure_reason_fails_every_op_of_the_entry(name: str) -> None:
    reason = FAILURE_REASONS[name]
    expected = failure_for(reason)

    async def body() -> None:
        fake = FakeRaft()
        committer = GroupCommitter(fake.propose, asyncio.get_running_loop(), max_inflight=1)
        tasks = submit_all(committer, [create(), enqueue("a"), enqueue("b")])
        await until(lambda: len(fake.proposals) == 1, "the proposal")
        fake.complete(0, reason)
        outcomes = await gather_outcomes(tasks)
        for outcome in outcomes:
            assert type(outcome) is type(expected)
            assert isinstance(outcome, ReplicationError) and outcome.detail == expected.detail
        assert len({id(o) for o in outcomes}) == 3  # one exception instance per op

        # The entry no longer counts as in flight: the next op is proposed at once (max_inflight=1).
        again = submit_all(committer, [create()])
        await until(lambda: len(fake.proposals) == 2, "the next proposal")
        fake.complete(1)
        assert isinstance((await gather_outcomes(again))[0], Applied)

    run(body)


def test_committed_without_a_result_on_this_node_is_outcome_unknown() -> None:
    # SUCCESS with result None: this node had applied the entry before (journal replay), so no result.
    async def body() -> None:
        fake = FakeRaft()
        committer = GroupCommitter(fake.propose, asyncio.get_running_loop())
        tasks = submit_all(committer, [create(), enqueue("a")])
        await until(lambda: len(fake.proposals) == 1, "the proposal")
        call_from_tick_thread(fake.proposals[0].callback, None, FAIL_REASON.SUCCESS)
        assert all(type(o) is OutcomeUnknown for o in await gather_outcomes(tasks))

    run(body)


def test_a_failure_reported_synchronously_inside_propose_is_delivered() -> None:
    # pysyncobj's _applyCommand calls the callback with QUEUE_FULL on the caller's thread, inside propose.
    async def body() -> None:
        proposals: list[bytes] = []

        def propose(data: bytes, callback: Callback) -> None:
            proposals.append(data)
            callback(None, FAIL_REASON.QUEUE_FULL)

        committer = GroupCommitter(propose, asyncio.get_running_loop(), max_inflight=1)
        assert all(type(o) is Overloaded for o in await gather_outcomes(submit_all(committer, [create(), create()])))
        assert all(type(o) is Overloaded for o in await gather_outcomes(submit_all(committer, [create()])))
        assert len(proposals) == 2

    run(body)


def test_propose_refusing_with_a_replication_error_fails_the_entry_and_frees_its_slot() -> None:
    # QueueReplica.propose raises NoLeader (nothing proposed) when no leader is known or it is unreachable.
    async def body() -> None:
        fake = FakeRaft()
        refuse = [True]

        def propose(data: bytes, callback: Callback) -> None:
            if refuse[0]:
                raise NoLeader("no Raft leader is known")
            fake.propose(data, callback)

        committer = GroupCommitter(propose, asyncio.get_running_loop(), max_inflight=1)
        outcomes = await gather_outcomes(submit_all(committer, [create(), enqueue("a")]))
        assert [type(o) for o in outcomes] == [NoLeader, NoLeader]
        refuse[0] = False
        again = submit_all(committer, [create()])
        await until(lambda: len(fake.proposals) == 1, "the next proposal")
        fake.complete(0)
        assert isinstance((await gather_outcomes(again))[0], Applied)

    run(body)


def test_an_entry_that_does_not_decode_gives_every_op_the_single_rejection() -> None:
    async def body() -> None:
        fake = FakeRaft()
        committer = GroupCommitter(fake.propose, asyncio.get_running_loop())
        tasks = submit_all(committer, [create(), enqueue("a"), enqueue("b")])
        await until(lambda: len(fake.proposals) == 1, "the proposal")
        # The replicated bytes are garbage (the same on every replica): the machine returns one Rejected.
        index = fake.complete(0, data=b"\x01not an entry")
        outcomes = await gather_outcomes(tasks)
        assert len(outcomes) == 3
        first = outcomes[0]
        assert isinstance(first, Applied) and first.commit_index == index
        assert isinstance(first.result, Rejected) and first.result.code is ErrorCode.INVALID_ENTRY
        assert outcomes == [first, first, first]

    run(body)


def test_timeout_before_proposal_is_overloaded_and_the_op_is_withdrawn() -> None:
    async def body() -> None:
        fake = FakeRaft()
        committer = GroupCommitter(fake.propose, asyncio.get_running_loop(), max_inflight=1)
        first = submit_all(committer, [create()])
        await until(lambda: len(fake.proposals) == 1, "entry 1")
        with pytest.raises(Overloaded):
            await committer.submit(enqueue("late"), 0.05)
        fake.complete(0)
        assert isinstance((await gather_outcomes(first))[0], Applied)
        await spin()
        assert len(fake.proposals) == 1, "an op that timed out before proposal was proposed anyway"
        assert committer.ops_proposed == 1

    run(body)


def test_an_op_whose_waiter_was_cancelled_before_proposal_is_never_proposed() -> None:
    async def body() -> None:
        fake = FakeRaft()
        committer = GroupCommitter(fake.propose, asyncio.get_running_loop(), max_inflight=1)
        first = submit_all(committer, [create()])
        await until(lambda: len(fake.proposals) == 1, "entry 1")
        cancelled, kept = submit_all(committer, [enqueue("gone"), enqueue("kept")])
        await spin()
        cancelled.cancel()
        fake.complete(0)
        assert isinstance((await gather_outcomes(first))[0], Applied)
        await until(lambda: len(fake.proposals) == 2, "entry 2")
        assert fake.proposals[1].ops == [enqueue("kept")]
        fake.complete(1)
        assert isinstance((await gather_outcomes([kept]))[0], Applied)
        assert cancelled.cancelled()

    run(body)


def test_an_answered_entry_lets_go_of_its_messages_at_once() -> None:
    """Its give-up timer used to keep every message body of an answered entry alive until the request timeout:
    at 20,000 msg/s and a 10 s timeout that is most of a leader's memory."""

    async def body() -> None:
        fake = FakeRaft()
        committer = GroupCommitter(fake.propose, asyncio.get_running_loop())
        tasks = submit_all(committer, [create(), enqueue("a"), enqueue("b")], timeout=600.0)
        await until(lambda: len(fake.proposals) == 1, "entry 1")
        (entry,) = fake.proposals[0].callback.__defaults__ or ()
        timer = entry.give_up
        assert timer is not None and not timer.cancelled() and len(entry.items) == 3
        fake.complete(0)
        assert all(isinstance(o, Applied) for o in await gather_outcomes(tasks))
        assert entry.items == [] and entry.give_up is None and timer.cancelled()

    run(body)


def test_timeout_after_proposal_is_outcome_unknown() -> None:
    async def body() -> None:
        fake = FakeRaft()
        committer = GroupCommitter(fake.propose, asyncio.get_running_loop())
        with pytest.raises(OutcomeUnknown):
            await committer.submit(create(), 0.05)
        assert len(fake.proposals) == 1 and fake.proposals[0].ops == [create()]

    run(body)


@pytest.mark.parametrize("reason_name", ["SUCCESS", *sorted(FAILURE_REASONS)])
def test_a_late_completion_after_a_timeout_is_silent(reason_name: str) -> None:
    """No 'Future exception was never retrieved' (asyncio reports it to the loop's handler, not as a warning)."""
    reported: list[dict[str, Any]] = []

    async def body() -> None:
        loop = asyncio.get_running_loop()
        loop.set_exception_handler(lambda _loop, context: reported.append(context))
        await canary_is_reported(loop, reported)

        fake = FakeRaft()
        committer = GroupCommitter(fake.propose, loop, max_inflight=1)
        with pytest.raises(OutcomeUnknown) as timed_out:
            await committer.submit(create(), 0.05)
        del timed_out
        fake.complete(0, getattr(FAIL_REASON, reason_name))
        # _settle ran once the next op is proposed (max_inflight=1 held it back until then).
        nxt = submit_all(committer, [enqueue("x")])
        await until(lambda: len(fake.proposals) == 2, "the next proposal")
        fake.complete(1)
        await gather_outcomes(nxt)
        fake.proposals.clear()  # drop the last references to the timed-out op's future
        del nxt
        await spin()
        gc.collect()
        await spin()

    run(body)
    assert [c.get("message") for c in reported] == []


async def canary_is_reported(loop: asyncio.AbstractEventLoop, reported: list[dict[str, Any]]) -> None:
    """Shows the detector works: an unretrieved future exception does reach the handler."""
    future: asyncio.Future[None] = loop.create_future()
    future.set_exception(OutcomeUnknown("canary"))
    del future
    gc.collect()
    await spin()
    assert any("never retrieved" in str(c.get("message")) for c in reported)
    reported.clear()


def test_a_callback_that_never_comes_does_not_wedge_the_committer() -> None:
    """Regression: pysyncobj can drop a callback for good: a forwarded command whose apply_command or reply is lost when
    the connection drops after it was sent while the leader stays the same (commandsWaitingReply is only flushed
    on a leader change; QueueReplica.propose's reachability check only covers a leader already unreachable), or
    an entry a follower skips by installing a snapshot (commandsWaitingCommit is never flushed). The entry's
    in-flight slot is then never released (_inflight is decremented only in _settle); after max_inflight such
    entries the node proposes nothing again and every write it receives fails with Overloaded until a restart."""

    async def body() -> None:
        fake = FakeRaft()
        committer = GroupCommitter(fake.propose, asyncio.get_running_loop(), max_inflight=1)
        with pytest.raises(OutcomeUnknown):
            await committer.submit(create(), 0.05)  # proposed; its callback is lost
        assert len(fake.proposals) == 1
        # Nobody waits for that entry any more. A new op must still be proposed and answered.
        later = submit_all(committer, [create("r")], timeout=0.3)
        await until(lambda: len(fake.proposals) == 2 or later[0].done(), "the new op to be proposed or to fail")
        outcome = later[0].exception() if later[0].done() else None
        assert len(fake.proposals) == 2, f"the new op was never proposed: {outcome!r}"
        fake.complete(1)
        assert isinstance((await gather_outcomes(later))[0], Applied)

    run(body)


def test_max_pending_rejects_new_ops_as_overloaded() -> None:
    async def body() -> None:
        fake = FakeRaft()
        committer = GroupCommitter(fake.propose, asyncio.get_running_loop(), max_inflight=1, max_pending=3)
        first = submit_all(committer, [create()])
        await until(lambda: len(fake.proposals) == 1, "entry 1")
        waiting = submit_all(committer, [enqueue("a"), enqueue("b"), enqueue("c")])
        await spin()
        with pytest.raises(Overloaded):
            await asyncio.wait_for(committer.submit(enqueue("refused"), DEADLINE_S), 0.5)
        fake.complete(0)
        await until(lambda: len(fake.proposals) == 2, "entry 2")
        assert fake.proposals[1].ops == [enqueue("a"), enqueue("b"), enqueue("c")]
        fake.complete(1)
        assert all(isinstance(o, Applied) for o in await gather_outcomes(first + waiting))

    run(body)


def test_max_bytes_splits_entries_without_reordering() -> None:
    async def body() -> None:
        fake = FakeRaft()
        max_bytes = 3000
        committer = GroupCommitter(fake.propose, asyncio.get_running_loop(), max_bytes=max_bytes, max_inflight=100)
        ops: list[Command] = [enqueue(f"m{i}", body=bytes(1000)) for i in range(5)]
        tasks = submit_all(committer, [create(), *ops])
        await until(lambda: len(fake.proposals) == 3, "three entries")
        await spin()
        assert [len(p.ops) for p in fake.proposals] == [3, 2, 1]
        assert [op for p in fake.proposals for op in p.ops] == [create(), *ops]
        for p in fake.proposals:
            assert len(p.data) <= max_bytes
        for i in range(3):
            fake.complete(i)
        assert all(isinstance(o, Applied) for o in await gather_outcomes(tasks))

    run(body)


def _acks_with_many_receipts() -> list[Command]:
    receipts = [make_receipt(1, seq, 1) for seq in range(MAX_RECEIPTS)]  # the most one HTTP ack may carry
    return [Ack("q", receipts) for _ in range(10)]


def _enqueues_with_large_attributes() -> list[Command]:
    attributes = {f"attribute-{i:02}": "v" * MAX_ATTRIBUTE_LEN for i in range(MAX_ATTRIBUTES)}
    return [Enqueue("q", [NewMessage(f"m{i}", b"", attributes)]) for i in range(10)]


@pytest.mark.parametrize(
    "make_ops", [_acks_with_many_receipts, _enqueues_with_large_attributes], ids=["ack-receipts", "attributes"]
)
def test_max_bytes_bounds_entries_whatever_the_ops_carry(make_ops: Callable[[], list[Command]]) -> None:
    """Regression: the size estimate (group_commit._estimate) counts only message bodies, so receipts and attributes
    are free: 10 acks of 1000 receipts (~36 KB each) all go into one ~360 KB entry under max_bytes=100 KB, and
    at the defaults (max_ops=2000, max_bytes=8 MiB) one entry can reach ~70 MB."""
    max_bytes = 100_000
    ops = make_ops()
    assert all(len(encode_entry(Entry(0, [op]))) < max_bytes for op in ops)

    async def body() -> None:
        fake = FakeRaft()
        committer = GroupCommitter(fake.propose, asyncio.get_running_loop(), max_bytes=max_bytes, max_inflight=100)
        submit_all(committer, ops)
        await until(lambda: len(fake.proposals) >= 1, "the first proposal")
        await spin()
        assert [op for p in fake.proposals for op in p.ops] == ops
        sizes = [len(p.data) for p in fake.proposals]
        assert max(sizes) <= max_bytes, f"entry sizes {sizes} exceed max_bytes={max_bytes}"

    run(body)


def test_an_op_larger_than_max_bytes_goes_alone() -> None:
    async def body() -> None:
        fake = FakeRaft()
        committer = GroupCommitter(fake.propose, asyncio.get_running_loop(), max_bytes=500)
        big = enqueue("big", body=bytes(2000))
        submit_all(committer, [create(), big, enqueue("small")])
        await until(lambda: len(fake.proposals) == 3, "three entries")
        assert [p.ops for p in fake.proposals] == [[create()], [big], [enqueue("small")]]

    run(body)


def test_max_ops_splits_entries() -> None:
    async def body() -> None:
        fake = FakeRaft()
        committer = GroupCommitter(fake.propose, asyncio.get_running_loop(), max_ops=3)
        submit_all(committer, [enqueue(f"m{i}") for i in range(7)])
        await until(lambda: len(fake.proposals) == 3, "three entries")
        assert [len(p.ops) for p in fake.proposals] == [3, 3, 1]

    run(body)


def test_entries_carry_the_injected_clock_at_proposal_time() -> None:
    stamps: Iterator[int] = iter([1_000, 2_000, 3_000])

    async def body() -> None:
        fake = FakeRaft()
        committer = GroupCommitter(fake.propose, asyncio.get_running_loop(), max_inflight=1, clock_ms=stamps.__next__)
        first = submit_all(committer, [create()])
        await until(lambda: len(fake.proposals) == 1, "entry 1")
        later = submit_all(committer, [create("r")])
        await spin()
        fake.complete(0)
        await until(lambda: len(fake.proposals) == 2, "entry 2")
        fake.complete(1)
        await gather_outcomes(first + later)
        assert [p.entry.now_ms for p in fake.proposals] == [1_000, 2_000]
        # The stamp is what every replica uses as its clock.
        info_q, info_r = fake.machine.queue_info("q"), fake.machine.queue_info("r")
        assert info_q is not None and info_q.created_at_ms == 1_000
        assert info_r is not None and info_r.created_at_ms == 2_000

    run(body)


def test_default_clock_is_wall_clock_milliseconds() -> None:
    import time

    async def body() -> None:
        fake = FakeRaft()
        committer = GroupCommitter(fake.propose, asyncio.get_running_loop())
        before = int(time.time() * 1000)
        submit_all(committer, [create()])
        await until(lambda: len(fake.proposals) == 1, "the proposal")
        after = int(time.time() * 1000)
        assert before <= fake.proposals[0].entry.now_ms <= after

    run(body)


def test_giving_up_in_flight_answers_every_proposed_op_at_once_and_frees_the_slots() -> None:
    """Fast answers: a node that lost contact with the ones that commit answers what it proposed OutcomeUnknown
    at once (it may still commit) instead of at the request timeout; a late callback changes nothing."""

    async def body() -> None:
        loop = asyncio.get_running_loop()
        fake = FakeRaft()
        committer = GroupCommitter(fake.propose, loop, max_inflight=2)
        tasks = submit_all(committer, [create("a")], timeout=60)
        await until(lambda: len(fake.proposals) == 1, "the first proposal")
        tasks += submit_all(committer, [create("b")], timeout=60)
        await until(lambda: len(fake.proposals) == 2, "the second proposal")
        started = loop.time()
        committer.give_up_in_flight("this node has not heard from a majority for 0.41 s")
        outcomes = await gather_outcomes(tasks)
        assert loop.time() - started < 1.0
        assert all(isinstance(o, OutcomeUnknown) for o in outcomes), outcomes
        assert "0.41 s" in str(outcomes[0]) and "may still commit" in str(outcomes[0])
        fake.complete(0)  # the late callback of an entry given up on: ignored
        # Both slots are free again: the next op is proposed and answered.
        later = submit_all(committer, [create("c")])
        await until(lambda: len(fake.proposals) == 3, "the next proposal")
        fake.complete(2)
        assert isinstance((await gather_outcomes(later))[0], Applied)

    run(body)


def test_an_op_that_cannot_be_encoded_fails_alone_and_its_neighbours_are_proposed() -> None:
    """Once, a raw non-UTF-8 header (a surrogate in the idempotency key) made the whole entry fail to encode, inside
    the event loop's callback: every operation of the group commit waited out its timeout."""

    async def body() -> None:
        fake = FakeRaft()
        committer = GroupCommitter(fake.propose, asyncio.get_running_loop())
        bad = Enqueue("q", [NewMessage("bad", b"x", {}, 0, "caf\udce9", b"f")])
        tasks = submit_all(committer, [create(), bad, enqueue("m1")])
        await until(lambda: len(fake.proposals) == 1, "the proposal of the two good operations")
        assert fake.proposals[0].ops == [create(), enqueue("m1")]
        index = fake.complete(0)
        created, refused, enqueued = await gather_outcomes(tasks)
        assert isinstance(refused, UnicodeEncodeError)
        assert created == Applied(QueueCreated(created=True), commit_index=index)
        assert enqueued == Applied(Enqueued([EnqueuedMessage("m1", 1)]), commit_index=index)

    run(body)
