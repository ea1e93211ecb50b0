"""Every pysyncobj failure reason, mapped once to the outcome a client understands.

The rule: an outcome is reported as a failure only when the command certainly did not and will not commit.
Anything else, including a reason this table does not know, is ``OutcomeUnknown``.
"""

from __future__ import annotations

from pysyncobj import FAIL_REASON

from state_machine.contract import NoLeader, NotLeader, OutcomeUnknown, Overloaded, ReplicationError

#: The reason pysyncobj gives a callback whose command committed (the node's code needs no pysyncobj import for it).
SUCCESS: int = FAIL_REASON.SUCCESS

# reason -> (error class, detail). SUCCESS is not a failure and is absent on purpose.
_TABLE: dict[int, tuple[type[ReplicationError], str]] = {
    # Never entered pysyncobj's queue.
    FAIL_REASON.QUEUE_FULL: (Overloaded, "the node's Raft proposal queue is full"),
    # No leader known when the tick thread looked; the command was dropped, not sent.
    FAIL_REASON.MISSING_LEADER: (NoLeader, "no Raft leader is known (election in progress or no quorum)"),
    # Another entry committed at the index the command was appended at: it can never commit.
    FAIL_REASON.DISCARDED: (NotLeader, "a new leader replaced the entry before it committed"),
    # The node the command was forwarded to is not the leader; it did not append it.
    FAIL_REASON.NOT_LEADER: (NotLeader, "the node the command was forwarded to is not the leader"),
    # Forwarded, then the leader changed before it told us the index: it may still commit.
    FAIL_REASON.LEADER_CHANGED: (OutcomeUnknown, "the leader changed while the command was in flight"),
    # Only membership changes are denied; nothing was appended.
    FAIL_REASON.REQUEST_DENIED: (NotLeader, "the leader denied the request"),
    FAIL_REASON.UNKNOWN_OUTCOME: (OutcomeUnknown, "the leader cannot tell whether the command committed"),
}


def failure_for(reason: int) -> ReplicationError:
    """The client-facing error for a pysyncobj failure reason (never call it with SUCCESS)."""
    cls, detail = _TABLE.get(reason, (OutcomeUnknown, f"unrecognised Raft failure reason {reason}"))
    return cls(detail)
