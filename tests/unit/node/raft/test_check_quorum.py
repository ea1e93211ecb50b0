"""CheckQuorum's bookkeeping (raft_queue/node/raft/check_quorum.py), with a fake clock."""

from __future__ import annotations

import math

import pytest

from raft_queue.node.raft.check_quorum import ContactBounds, leader_silence, majority_silence


def test_bounds_for_the_default_timeouts() -> None:
    b = ContactBounds.for_timeouts(heartbeat_s=0.05, election_min_s=0.4)
    assert b.refuse_after_s == pytest.approx(0.2)  # four heartbeats, = half the shortest election timeout
    assert b.give_up_after_s == pytest.approx(0.4)


def test_refusal_stays_within_half_the_shortest_election_timeout() -> None:
    b = ContactBounds.for_timeouts(heartbeat_s=0.05, election_min_s=0.15)
    assert b.refuse_after_s == pytest.approx(0.075)
    assert b.give_up_after_s >= b.refuse_after_s


def test_three_nodes_need_one_follower() -> None:
    now = 100.0
    assert majority_silence(now, [99.95, 90.0], 3) == pytest.approx(0.05)  # the freshest follower counts
    assert majority_silence(now, [99.0, 98.0], 3) == pytest.approx(1.0)


def test_five_nodes_need_the_second_freshest_follower() -> None:
    now = 100.0
    heard = [99.99, 99.5, 97.0, 96.0]
    assert majority_silence(now, heard, 5) == pytest.approx(0.5)


def test_a_leader_alone_or_with_too_few_answers_on_record() -> None:
    assert majority_silence(5.0, [], 1) == 0.0  # a single node is its own majority
    assert majority_silence(5.0, [], 3) == math.inf
    assert majority_silence(5.0, [4.0], 5) == math.inf


def test_silence_grows_with_the_clock_until_an_answer_comes() -> None:
    heard = {"b": 10.0, "c": 10.0}
    clock = 10.0
    bounds = ContactBounds.for_timeouts(0.05, 0.4)
    history = []
    for step in range(12):
        clock = 10.0 + 0.05 * step
        if step == 8:
            heard["c"] = clock  # c answers again
        history.append(majority_silence(clock, heard.values(), 3) > bounds.refuse_after_s)
    # refuse after 0.2 s (steps 5-7), contact again once c answered
    assert history == [False] * 5 + [True] * 3 + [False] * 4


def test_follower_silence() -> None:
    assert leader_silence(10.0, leader_known=True, leader_heard_at=9.9) == pytest.approx(0.1)
    assert leader_silence(10.0, leader_known=False, leader_heard_at=9.9) == math.inf
    assert leader_silence(10.0, leader_known=True, leader_heard_at=None) == math.inf
