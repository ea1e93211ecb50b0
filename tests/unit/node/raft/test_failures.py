"""failures.failure_for: every pysyncobj failure reason maps to the outcome a client may act on.

The safety rule: only a reason after which the command certainly did not and never will commit may map to a
"safe to retry" class (NoLeader, NotLeader, Overloaded). Anything else is OutcomeUnknown, which is never wrong.
The reasons are discovered from pysyncobj itself, so a reason added by an upgrade fails these tests until it is
classified here and in failures.py.
"""

from __future__ import annotations

import pytest
from pysyncobj import FAIL_REASON

from raft_queue.node.raft.failures import failure_for
from state_machine.contract import NoLeader, NotLeader, OutcomeUnknown, Overloaded, ReplicationError

#: The classes that tell a client "nothing was applied, retrying cannot duplicate it".
SAFE = (NoLeader, NotLeader, Overloaded)


def _discovered() -> dict[str, int]:
    return {name: value for name, value in vars(FAIL_REASON).items() if not name.startswith("_")}


ALL_REASONS = _discovered()
FAILURES = {name: value for name, value in ALL_REASONS.items() if name != "SUCCESS"}

# The exact table, with the reason each entry is (or is not) safe, read from pysyncobj 0.3.17's syncobj.py.
EXPECTED: dict[str, type[ReplicationError]] = {
    # _applyCommand: commandsQueue.put_nowait raised Queue.Full. The command never entered pysyncobj.
    "QUEUE_FULL": Overloaded,
    # _checkCommandsToApply: not leader and no leader known; the callback fires and the command is dropped
    # without being appended or forwarded (commandsWaitLeader=False makes this immediate).
    "MISSING_LEADER": NoLeader,
    # __applyLogEntries: the entry committed at the index the command was appended at carries another term,
    # so the command's (index, term) was overwritten; by Raft's log matching it can never commit.
    "DISCARDED": NotLeader,
    # The node a follower forwarded to answered apply_command_response(error=NOT_LEADER) from
    # _checkCommandsToApply without appending the command (it is not the leader itself).
    "NOT_LEADER": NotLeader,
    # __onLeaderChanged: a forwarded command whose apply_command_response (with its index) never arrived.
    # The old leader may have appended it and the new leader may still commit it: unknown, never "safe".
    "LEADER_CHANGED": OutcomeUnknown,
    # Only membership changes (dynamicMembershipChange, off here) and leadership transfer are denied; the
    # denial is decided before anything is appended.
    "REQUEST_DENIED": NotLeader,
    # apply_command_response names an index this node had already applied (e.g. via a snapshot): pysyncobj
    # cannot tell whether the entry there is ours. It may have committed: unknown.
    "UNKNOWN_OUTCOME": OutcomeUnknown,
}

#: The reasons after which the command certainly did not and will not commit (see the comments above).
CERTAINLY_NOT_COMMITTED = frozenset({"QUEUE_FULL", "MISSING_LEADER", "DISCARDED", "NOT_LEADER", "REQUEST_DENIED"})


def test_the_table_covers_exactly_pysyncobjs_failure_reasons() -> None:
    assert "SUCCESS" in ALL_REASONS and ALL_REASONS["SUCCESS"] == 0
    assert set(EXPECTED) == set(FAILURES), "classify every new or removed pysyncobj FAIL_REASON here"
    assert len(set(ALL_REASONS.values())) == len(ALL_REASONS), "reason values must be distinct"


@pytest.mark.parametrize("name", sorted(FAILURES))
def test_every_failure_reason_maps_to_its_exact_class(name: str) -> None:
    error = failure_for(FAILURES[name])
    assert isinstance(error, ReplicationError)
    assert type(error) is EXPECTED[name]
    assert error.detail and str(error) == error.detail


@pytest.mark.parametrize("name", sorted(FAILURES))
def test_only_reasons_that_certainly_did_not_commit_are_safe(name: str) -> None:
    error = failure_for(FAILURES[name])
    if isinstance(error, SAFE):
        assert name in CERTAINLY_NOT_COMMITTED, f"{name} may have committed but is reported as safe to retry"
    else:
        assert type(error) is OutcomeUnknown
        assert name not in CERTAINLY_NOT_COMMITTED


@pytest.mark.parametrize("name", ["LEADER_CHANGED", "UNKNOWN_OUTCOME"])
def test_reasons_that_may_still_commit_are_outcome_unknown(name: str) -> None:
    assert type(failure_for(getattr(FAIL_REASON, name))) is OutcomeUnknown


def test_outcome_unknown_is_not_a_safe_class_and_vice_versa() -> None:
    # A handler that catches the safe classes must never catch an unknown outcome by inheritance.
    assert not issubclass(OutcomeUnknown, SAFE)
    for cls in SAFE:
        assert not issubclass(cls, OutcomeUnknown)


def _unknown_reasons() -> list[int]:
    known = set(ALL_REASONS.values())
    top = max(known)
    return [top + 1, top + 100, -1, 2**31, 2**64]


@pytest.mark.parametrize("reason", _unknown_reasons())
def test_unknown_reasons_are_outcome_unknown(reason: int) -> None:
    error = failure_for(reason)
    assert type(error) is OutcomeUnknown
    assert str(reason) in error.detail


def test_success_passed_by_mistake_is_never_reported_as_safe() -> None:
    # failure_for must not be called with SUCCESS; if it is, the answer must still not claim "not applied".
    assert type(failure_for(FAIL_REASON.SUCCESS)) is OutcomeUnknown


def test_each_call_returns_a_fresh_error() -> None:
    # Group commit fails every operation of an entry with the same reason: each future gets its own instance,
    # so their tracebacks do not pile up on one shared exception object.
    for value in FAILURES.values():
        assert failure_for(value) is not failure_for(value)
