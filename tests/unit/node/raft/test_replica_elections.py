"""PreVote's gate and CheckQuorum's refusals on a real QueueReplica (autoTick=False, ticked by hand).

Two partners that never answer: what they would say is delivered through FlushingTransport's
``_onMessageReceived`` (its hooks, then pysyncobj's own handler), or handed to the replica's PreVote hooks as
the transport would; what the replica sends is recorded instead of going to the network. pysyncobj believes it
is connected to someone (its ``__connectedToAnyone`` is replaced on the instance), as it would be with live peers.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from pysyncobj import FAIL_REASON
from pysyncobj.monotonic import monotonic as monotonic_raw

from raft_queue.node.raft import replica as replica_module
from state_machine.contract import NoLeader
from tests.unit.node.raft.test_replica import entry_data, free_address, hand_ticked_replica

FOLLOWER, CANDIDATE, LEADER = 0, 1, 2


@dataclass
class Trio:
    replica: Any
    peers: list[Any]
    sent: list[tuple[Any, dict[str, Any]]] = field(default_factory=list)
    lost: list[str] = field(default_factory=list)

    def tick(self) -> None:
        self.replica.doTick(0.0)

    def of_type(self, kind: str) -> list[tuple[Any, dict[str, Any]]]:
        return [(n, m) for n, m in self.sent if m.get("type") == kind]

    def deliver(self, node: Any, message: dict[str, Any]) -> None:
        """As a message from ``node`` arrives: through FlushingTransport's hooks, then pysyncobj's handler."""
        self.replica._SyncObj__transport._onMessageReceived(node, message)

    def elect(self) -> None:
        """Deadline passed, a pre-vote won, the real election won: the replica leads."""
        self.replica._SyncObj__raftElectionDeadline = 0.0
        self.tick()
        round_ = self.of_type("pre_vote")[-1][1]
        self.replica.count_pre_vote(self.peers[0], {"term": round_["term"], "round": round_["round"], "granted": True})
        self.tick()
        assert self.replica._SyncObj__raftState == CANDIDATE
        self.deliver(self.peers[0], {"type": "response_vote", "term": self.replica.raftCurrentTerm})
        assert self.replica._SyncObj__raftState == LEADER


@pytest.fixture
def trio(tmp_path: Path) -> Iterator[Trio]:
    timing = {"appendEntriesPeriod": 0.02, "raftMinTimeout": 0.2, "raftMaxTimeout": 0.4, "leaderFallbackTimeout": 0.4}
    with hand_ticked_replica(tmp_path, [free_address(), free_address()], **timing) as (replica, _, _, _):
        t = Trio(replica, sorted(replica.otherNodes, key=lambda n: n.id))
        replica._SyncObj__connectedToAnyone = lambda: True

        def record(node: Any, message: dict[str, Any]) -> bool:
            t.sent.append((node, dict(message)))
            return True

        replica._SyncObj__transport.send = record
        replica.isNodeConnected = lambda node: True
        replica.on_contact_lost = t.lost.append
        yield t


def test_the_internals_the_adapter_uses_exist_in_this_pysyncobj(trio: Trio) -> None:
    r = trio.replica
    for name in (
        "_SyncObj__raftState",
        "_SyncObj__raftElectionDeadline",
        "_SyncObj__transferInProgress",
        "_SyncObj__votedForNodeId",
        "_SyncObj__lastResponseTime",
        "_SyncObj__transport",
    ):
        assert hasattr(r, name), name
    for name in ("_SyncObj__getCurrentLogIndex", "_SyncObj__getCurrentLogTerm"):
        assert callable(getattr(r, name)), name
    assert callable(getattr(type(r), "_SyncObj__connectedToAnyone", None))
    assert "_SyncObj__" in (replica_module.__doc__ or "")


def test_a_passed_deadline_asks_for_pre_votes_and_does_not_raise_the_term(trio: Trio) -> None:
    r = trio.replica
    term = r.raftCurrentTerm
    r._SyncObj__raftElectionDeadline = 0.0
    trio.tick()
    pre_votes = trio.of_type("pre_vote")
    assert sorted(n.id for n, _ in pre_votes) == [p.id for p in trio.peers]
    message = pre_votes[0][1]
    assert message["term"] == term + 1
    assert (message["last_log_index"], message["last_log_term"]) == (
        r._SyncObj__getCurrentLogIndex(),
        r._SyncObj__getCurrentLogTerm(),
    )
    assert r.raftCurrentTerm == term and r._SyncObj__raftState == FOLLOWER
    assert trio.of_type("request_vote") == []
    # Pushed back: it tries again in a quarter to a half of the shortest election timeout (0.2 s here).
    assert 0.05 - 0.01 <= r._SyncObj__raftElectionDeadline - monotonic_raw() <= 0.1


def test_no_grants_no_election_however_long_it_waits(trio: Trio) -> None:
    r = trio.replica
    term = r.raftCurrentTerm
    for _ in range(5):
        r._SyncObj__raftElectionDeadline = 0.0
        trio.tick()
    assert r.raftCurrentTerm == term and trio.of_type("request_vote") == []
    assert len(trio.of_type("pre_vote")) == 10  # a new round, to both peers, each time


def test_a_majority_of_grants_starts_the_real_election(trio: Trio) -> None:
    r = trio.replica
    term = r.raftCurrentTerm
    r._SyncObj__raftElectionDeadline = 0.0
    trio.tick()
    round_ = trio.of_type("pre_vote")[0][1]
    # A refusal and a grant from an old round count for nothing.
    r.count_pre_vote(trio.peers[0], {"term": round_["term"], "round": round_["round"], "granted": False})
    r.count_pre_vote(trio.peers[0], {"term": round_["term"], "round": round_["round"] - 1, "granted": True})
    trio.tick()
    assert r.raftCurrentTerm == term
    r.count_pre_vote(trio.peers[1], {"term": round_["term"], "round": round_["round"], "granted": True})
    trio.tick()
    assert r.raftCurrentTerm == term + 1 and r._SyncObj__raftState == CANDIDATE
    assert len(trio.of_type("request_vote")) == 2


def test_a_won_round_is_void_once_a_leader_was_heard(trio: Trio) -> None:
    r = trio.replica
    r._SyncObj__raftElectionDeadline = 0.0
    trio.tick()
    round_ = trio.of_type("pre_vote")[0][1]
    r.heard_append_entries({"type": "append_entries", "term": r.raftCurrentTerm})
    r.count_pre_vote(trio.peers[0], {"term": round_["term"], "round": round_["round"], "granted": True})
    trio.tick()
    assert trio.of_type("request_vote") == []


def test_pre_vote_answers_change_nothing(trio: Trio) -> None:
    r = trio.replica
    before = (r.raftCurrentTerm, r._voted_for(), r._SyncObj__raftElectionDeadline)
    candidate_log = {"last_log_index": 10**6, "last_log_term": 10**6}
    answer = r.answer_pre_vote(trio.peers[0], {"term": r.raftCurrentTerm + 1, "round": 7, **candidate_log})
    assert answer == {"type": "pre_vote_response", "term": r.raftCurrentTerm + 1, "round": 7, "granted": True}
    assert (r.raftCurrentTerm, r._voted_for(), r._SyncObj__raftElectionDeadline) == before
    # Having heard from a leader just now, it refuses.
    r.heard_append_entries({"type": "append_entries", "term": r.raftCurrentTerm})
    answer = r.answer_pre_vote(trio.peers[0], {"term": r.raftCurrentTerm + 1, "round": 8, **candidate_log})
    assert answer["granted"] is False


def test_check_quorum_refuses_proposals_once_the_majority_is_silent(trio: Trio) -> None:
    r = trio.replica
    trio.elect()
    trio.tick()
    trio.lost.clear()  # as a follower without a leader it reported "no leader" once
    bounds = r.contact_bounds
    assert bounds.refuse_after_s == pytest.approx(0.08) and bounds.give_up_after_s == pytest.approx(0.2)
    r.propose(entry_data(), lambda result, reason: None)  # contact is fresh: proposed
    time.sleep(bounds.refuse_after_s + 0.02)
    trio.tick()
    with pytest.raises(NoLeader, match="CheckQuorum"):
        r.propose(entry_data(), lambda result, reason: None)
    refusal = r.refuse_forwarded({"type": "apply_command", "command": b"", "request_id": 3})
    assert refusal == {"type": "apply_command_response", "request_id": 3, "error": FAIL_REASON.MISSING_LEADER}
    assert trio.lost == []
    time.sleep(bounds.give_up_after_s - bounds.refuse_after_s)
    trio.tick()
    assert len(trio.lost) == 1 and "majority" in trio.lost[0]
    # One follower answers: contact with a majority (of 3) again.
    trio.deliver(trio.peers[1], {"type": "next_node_idx", "next_node_idx": 1, "reset": False, "success": False})
    trio.tick()
    assert r._SyncObj__raftState == LEADER
    r.propose(entry_data(), lambda result, reason: None)
    assert r.refuse_forwarded({"type": "apply_command", "command": b"", "request_id": 4}) is None


def test_the_leader_steps_down_after_one_election_timeout_without_a_majority(trio: Trio) -> None:
    r = trio.replica
    trio.elect()
    time.sleep(0.45)  # leaderFallbackTimeout = the longest election timeout (0.4 s)
    trio.tick()
    assert r._SyncObj__raftState == FOLLOWER and r._getLeader() is None
    with pytest.raises(NoLeader):
        r.propose(entry_data(), lambda result, reason: None)


def test_a_follower_refuses_when_its_leader_went_silent(trio: Trio) -> None:
    r = trio.replica
    leader = trio.peers[0]
    trio.deliver(leader, {"type": "append_entries", "term": 1, "commit_index": 1, "entries": []})
    trio.tick()
    assert r._getLeader() == leader
    time.sleep(r.contact_bounds.refuse_after_s + 0.02)
    trio.tick()
    with pytest.raises(NoLeader, match="no word from the leader"):
        r.propose(entry_data(), lambda result, reason: None)


def test_a_follower_that_has_not_caught_up_since_its_start_refuses(trio: Trio) -> None:
    r = trio.replica
    leader = trio.peers[0]
    # The leader's commit index is far ahead of this node's log: it is catching up.
    trio.deliver(leader, {"type": "append_entries", "term": 1, "commit_index": 50, "entries": []})
    trio.tick()
    assert r._getLeader() == leader and not r.isReady()
    with pytest.raises(NoLeader, match="catching up"):
        r.propose(entry_data(), lambda result, reason: None)
    # Caught up (applied up to the leader's commit index): proposals are forwarded again.
    trio.deliver(leader, {"type": "append_entries", "term": 1, "commit_index": 1, "entries": []})
    trio.tick()
    assert r.isReady()
    r.propose(entry_data(), lambda result, reason: None)
    trio.tick()
    assert [n for n, _ in trio.of_type("apply_command")] == [leader]
