"""PreVote (Raft thesis 9.6), free of pysyncobj: the grant rule and one round's tally.

Before its election deadline makes it a candidate (which raises its term), a node asks its peers whether they
would vote for it: a ``pre_vote`` message with the term it would campaign in and its last log index and term. A
peer grants when it would grant the real vote *and* it has not heard from a current leader within the shortest
election timeout; granting changes nothing on the peer (no term, no vote, no deadline). Only with grants from a
majority, itself included, does the node start the real election. So a node that was cut off never raises its
term while alone, and cannot depose a healthy leader when it comes back.

The messages (``transport.FlushingTransport`` intercepts them before pysyncobj sees them)::

    {"type": "pre_vote", "term": T+1, "round": n, "last_log_index": i, "last_log_term": t}
    {"type": "pre_vote_response", "term": T+1, "round": n, "granted": bool}
"""

from __future__ import annotations

from dataclasses import dataclass, field

PRE_VOTE = "pre_vote"
PRE_VOTE_RESPONSE = "pre_vote_response"


@dataclass(frozen=True)
class LogPosition:
    """The last entry of a log: compared by term, then index (Raft 5.4.1's "at least as up to date")."""

    term: int
    index: int

    def at_least_as_up_to_date_as(self, other: LogPosition) -> bool:
        return (self.term, self.index) >= (other.term, other.index)


@dataclass(frozen=True)
class Voter:
    """What the peer asked for a pre-vote knows about itself."""

    current_term: int
    voted_for: str | None
    log: LogPosition
    is_leader: bool
    #: When it last heard from a leader of its current term (None: never since it started).
    leader_heard_at: float | None


def grants_pre_vote(
    *, candidate: str, term: int, candidate_log: LogPosition, voter: Voter, now: float, election_min_s: float
) -> bool:
    """Whether ``voter`` would vote for ``candidate`` campaigning in ``term`` (a pure function: no state changes).

    Refused when the voter leads, or heard from a leader less than the shortest election timeout ago (that
    leader is alive: an election would only disrupt it); when ``term`` is behind the voter's, or equal to it and
    the voter already voted for someone else in it (the real vote would be refused); or when the candidate's log
    is behind the voter's (it could not win the real vote either).
    """
    if voter.is_leader:
        return False
    if voter.leader_heard_at is not None and now - voter.leader_heard_at < election_min_s:
        return False
    if term < voter.current_term:
        return False
    if term == voter.current_term and voter.voted_for not in (None, candidate):
        return False
    return candidate_log.at_least_as_up_to_date_as(voter.log)


@dataclass
class PreVoteRound:
    """One round: the term it is for, when it started, and who granted (the candidate grants itself)."""

    round_id: int
    term: int
    cluster_size: int
    started_at: float
    candidate: str
    granted: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.granted.add(self.candidate)

    @property
    def won(self) -> bool:
        return len(self.granted) > self.cluster_size / 2

    def grant(self, voter: str) -> bool:
        """Counts ``voter``'s grant; returns whether the round is won now."""
        self.granted.add(voter)
        return self.won

    def still_valid(self, *, current_term: int, now: float, leader_heard_at: float | None, max_age_s: float) -> bool:
        """A won round authorises one election in ``term`` only: not once the term moved, a leader was heard
        from after the round started, or the round is older than ``max_age_s`` (the peers' view may have
        changed)."""
        if self.term != current_term + 1 or now - self.started_at > max_age_s:
            return False
        return leader_heard_at is None or leader_heard_at <= self.started_at
