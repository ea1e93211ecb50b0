"""PreVote's grant rule and a round's tally (raft_queue/node/raft/pre_vote.py), with a fake clock."""

from __future__ import annotations

import pytest

from raft_queue.node.raft.pre_vote import LogPosition, PreVoteRound, Voter, grants_pre_vote

ELECTION_MIN_S = 0.4
EQUAL_LOG = LogPosition(5, 100)


def voter(**kw: object) -> Voter:
    base: dict[str, object] = {
        "current_term": 5,
        "voted_for": None,
        "log": LogPosition(term=5, index=100),
        "is_leader": False,
        "leader_heard_at": None,
    }
    base.update(kw)
    return Voter(**base)  # type: ignore[arg-type]


def grant(v: Voter, *, term: int = 6, log: LogPosition = EQUAL_LOG, now: float = 10.0, cand: str = "c") -> bool:
    return grants_pre_vote(
        candidate=cand, term=term, candidate_log=log, voter=v, now=now, election_min_s=ELECTION_MIN_S
    )


def test_grants_a_candidate_with_an_equal_log_when_no_leader_was_heard() -> None:
    assert grant(voter())


def test_refuses_while_a_leader_was_heard_within_the_shortest_election_timeout() -> None:
    assert not grant(voter(leader_heard_at=9.7), now=10.0)  # 0.3 s ago
    assert not grant(voter(leader_heard_at=10.0 - ELECTION_MIN_S + 0.001), now=10.0)
    assert grant(voter(leader_heard_at=10.0 - ELECTION_MIN_S), now=10.0)  # exactly the timeout: silent long enough
    assert grant(voter(leader_heard_at=8.0), now=10.0)


def test_a_leader_never_grants() -> None:
    assert not grant(voter(is_leader=True))


@pytest.mark.parametrize(
    ("log", "expected"),
    [
        (LogPosition(5, 99), False),  # same term, shorter
        (LogPosition(4, 500), False),  # older last term, however long
        (LogPosition(5, 100), True),
        (LogPosition(5, 101), True),
        (LogPosition(6, 1), True),  # newer last term, however short
    ],
)
def test_the_candidate_log_must_be_at_least_as_up_to_date(log: LogPosition, expected: bool) -> None:
    assert grant(voter(), log=log) is expected


def test_term_rule() -> None:
    assert not grant(voter(current_term=7), term=6)  # behind the voter: the real vote would be refused
    assert grant(voter(current_term=6), term=6)  # equal, no vote cast in it
    assert grant(voter(current_term=6, voted_for="c"), term=6, cand="c")
    assert not grant(voter(current_term=6, voted_for="other"), term=6, cand="c")
    assert grant(voter(current_term=5, voted_for="other"), term=6)  # a vote in an older term does not count


def test_granting_changes_nothing() -> None:
    v = voter()
    before = (v.current_term, v.voted_for, v.log, v.leader_heard_at)
    assert grant(v)
    assert (v.current_term, v.voted_for, v.log, v.leader_heard_at) == before


def test_a_round_needs_a_strict_majority_itself_included() -> None:
    three = PreVoteRound(round_id=1, term=6, cluster_size=3, started_at=0.0, candidate="a")
    assert not three.won
    assert three.grant("b")
    five = PreVoteRound(round_id=1, term=6, cluster_size=5, started_at=0.0, candidate="a")
    assert not five.grant("b")
    assert not five.grant("b")  # the same peer twice counts once
    assert five.grant("c")


def test_a_won_round_authorises_only_the_next_term_while_fresh_and_no_leader_spoke() -> None:
    r = PreVoteRound(round_id=1, term=6, cluster_size=3, started_at=10.0, candidate="a")
    r.grant("b")
    assert r.still_valid(current_term=5, now=10.1, leader_heard_at=None, max_age_s=1.2)
    assert r.still_valid(current_term=5, now=10.1, leader_heard_at=9.0, max_age_s=1.2)
    assert not r.still_valid(current_term=6, now=10.1, leader_heard_at=None, max_age_s=1.2)  # the term moved
    assert not r.still_valid(current_term=5, now=10.1, leader_heard_at=10.05, max_age_s=1.2)  # a leader spoke since
    assert not r.still_valid(current_term=5, now=11.3, leader_heard_at=None, max_age_s=1.2)  # too old
