"""QueueReplica: the one SyncObj subclass. It proposes entries and hands each committed one to ``fsm.QueueFSM``.

pysyncobj is extended through its seams, never forked: ``patches.install()`` (called here, at node start) puts our
``DurableJournal`` behind ``createJournal`` and demotes one false-alarm log line; ``transport.FlushingTransport``
fsyncs before anything that promises durability leaves; a tick callback flushes too, so a single-node cluster
(which commits without sending anything) is durable before the next tick can commit; ``fsm.QueueFSM`` holds the
apply and snapshot hooks.

There is exactly one replicated method, taking bytes, so method IDs never shift between versions; the command
codec inside the bytes carries the versioning.

PreVote and CheckQuorum (raft_queue/DESIGN.md) live here and in ``FlushingTransport``: ``_onTick`` is wrapped
(before pysyncobj's tick: hold the election until a pre-vote round is won; after it: publish how long this node
has been without contact), and the transport hands PreVote's messages and every ``append_entries`` to the hooks
below. pysyncobj has no API for these, so the replica reads and writes some of its name-mangled state. Every
such access is in the "pysyncobj internals" block at the end of this class, and nowhere else:

======================================  =====  ==================================================================
``_SyncObj__raftState``                 read   follower / candidate / leader
``_SyncObj__raftElectionDeadline``      r/w    PreVote pushes it back (round lost or pending) or sets it to 0
                                               (round won: campaign at the next tick)
``_SyncObj__connectedToAnyone()``       call   pysyncobj campaigns only when connected to someone; so do we
``_SyncObj__transferInProgress``        read   a leader-requested transfer (TimeoutNow) skips PreVote
``_SyncObj__votedForNodeId``            read   the pre-vote grant rule (a vote already cast in that term)
``_SyncObj__lastResponseTime``          read   CheckQuorum: each follower's last answer, kept by pysyncobj for
                                               ``leaderFallbackTimeout``
``_SyncObj__getCurrentLogIndex/Term()`` call   the last log position a pre-vote carries and compares
``_SyncObj__transport``                 read   the FlushingTransport, to send pre-votes
======================================  =====  ==================================================================

A test (tests/unit/node/raft/test_replica.py) checks that each of these exists in the installed pysyncobj.
"""

from __future__ import annotations

import logging
import math
import pickle
import random
from collections.abc import Callable
from typing import Any

from pysyncobj import FAIL_REASON, SyncObj, SyncObjConf, replicated
from pysyncobj.monotonic import monotonic as monotonic_raw

from raft_queue.node.raft import patches
from raft_queue.node.raft.check_quorum import ContactBounds, leader_silence, majority_silence
from raft_queue.node.raft.fsm import QueueFSM
from raft_queue.node.raft.journal import DurableJournal
from raft_queue.node.raft.pre_vote import PRE_VOTE, PRE_VOTE_RESPONSE, LogPosition, PreVoteRound, Voter, grants_pre_vote
from raft_queue.node.raft.transport import FlushingTransport, flush_or_stop
from state_machine.contract import NoLeader
from state_machine.machine import AppliedEntry

log = logging.getLogger(__name__)

_REGULAR_COMMAND = 0  # pysyncobj's _COMMAND_TYPE.REGULAR
_LEADER = 2  # pysyncobj's _RAFT_STATE.LEADER (FOLLOWER 0, CANDIDATE 1)


class QueueReplica(SyncObj):  # type: ignore[misc]
    def __init__(
        self,
        self_address: str,
        partners: list[str],
        *,
        conf: SyncObjConf,
        journal: DurableJournal,
        fsm: QueueFSM,
        dial_via: dict[str, tuple[str, int]] | None = None,
    ) -> None:
        patches.install()
        #: peer raft address -> (host, port) to dial instead (read by FlushingTransport during __init__).
        self.dial_via = dict(dial_via or {})
        self._fsm = fsm
        # PreVote and CheckQuorum state, all of it set before SyncObj.__init__ starts the tick thread; the hooks
        # stay inert (pysyncobj's behaviour) until _hooks_ready.
        self._hooks_ready = False
        # pysyncobj's clock (CLOCK_MONOTONIC_RAW, not time.monotonic): its deadlines and response times use it.
        self._clock = monotonic_raw
        self._election_min_s: float = conf.raftMinTimeout
        self._election_max_s: float = conf.raftMaxTimeout
        self.contact_bounds = ContactBounds.for_timeouts(conf.appendEntriesPeriod, conf.raftMinTimeout)
        self._cluster_size = len(partners) + 1
        self._pre_vote: PreVoteRound | None = None
        self._pre_vote_rounds = 0
        self._leader_heard_at: float | None = None
        #: Seconds this node has been without contact (see check_quorum.py), as of its last tick; read by propose.
        self.contact_silence_s = math.inf
        self._contact_lost = False
        #: Called on the tick thread when the silence first exceeds ``contact_bounds.give_up_after_s``.
        self.on_contact_lost: Callable[[str], None] | None = None
        #: Counters for status and tests: pre-vote rounds started / won, proposals refused for silence.
        self.pre_votes_started = 0
        self.pre_votes_won = 0
        self.proposals_refused = 0
        patches.register_journal(conf.journalFile, journal)
        super().__init__(self_address, partners, conf, transportClass=FlushingTransport)
        self.addOnTickCallback(lambda: flush_or_stop(journal))
        self._apply_id = self._methodToID[self._getFuncName("apply_entry")]
        self._others = list(self.otherNodes)
        self._hooks_ready = True

    @replicated  # type: ignore[untyped-decorator]
    def apply_entry(self, data: bytes) -> AppliedEntry | None:
        """pysyncobj's replicated method (it must live on the SyncObj): the FSM applies the entry."""
        return self._fsm.apply(self.raftLastApplied + 1, data)

    def leader_node(self) -> Any:
        """pysyncobj's current leader node (or None): a plain attribute read, safe from any thread."""
        return self._getLeader()

    def propose(self, data: bytes, callback: Callable[[Any, int], None]) -> None:
        """Queues one log entry; ``callback(result, fail_reason)`` runs on the tick thread.

        Raises ``NoLeader`` (nothing proposed) when no leader is known, or when the known leader is another node
        this one has no connection to: pysyncobj would send the command into the void and never call back (a
        node cut off from every peer never even starts an election), so the client would wait out its whole
        timeout for an unknown outcome where a definite "not proposed" is the truth. Also ``NoLeader`` when the
        node has been without contact for longer than ``contact_bounds.refuse_after_s`` (a leader with no answer
        from a majority: CheckQuorum; a follower with no word from its leader), and on a follower that has not
        caught up with the leader since it started (pysyncobj's ``isReady()``): its answer would wait for that.

        ``propose`` pickles ``(method id, (data,))`` with protocol 5, so the journal stores the entry bytes raw
        (pysyncobj's own protocol 2 would store them as latin-1 text, ~1.5x for binary).
        """
        leader = self._getLeader()
        if leader is None:
            raise NoLeader("no Raft leader is known (election in progress or no quorum)")
        is_self = leader == self.selfNode
        if not is_self and not self.isNodeConnected(leader):
            raise NoLeader(f"the last known leader ({leader.address}) is unreachable from this node")
        silence = self.contact_silence_s
        if silence > self.contact_bounds.refuse_after_s:
            self.proposals_refused += 1
            if is_self:
                raise NoLeader(f"this leader has not heard from a majority for {silence:.2f} s (CheckQuorum)")
            raise NoLeader(f"no word from the leader ({leader.address}) for {silence:.2f} s")
        if not is_self and not self.isReady():
            raise NoLeader("this node is catching up with the leader's log; ask another node")
        command = pickle.dumps((self._apply_id, (data,)), protocol=pickle.HIGHEST_PROTOCOL)
        self._applyCommand(command, callback, _REGULAR_COMMAND)

    # PreVote and CheckQuorum: everything below runs on pysyncobj's tick thread.

    def _onTick(self, timeToWait: float = 0.0) -> None:
        if not self._hooks_ready:
            super()._onTick(timeToWait)
            return
        self._hold_election(self._clock())
        super()._onTick(timeToWait)
        self._publish_contact(self._clock())

    def _hold_election(self, now: float) -> None:
        """PreVote's gate, just before pysyncobj's tick checks its election deadline.

        When the deadline has passed (and pysyncobj would campaign: it is no leader, and connected to someone),
        the election goes ahead only with a won pre-vote round that is still valid. Otherwise a new round starts
        and the deadline moves ahead (``_pre_vote_retry_s``), so pysyncobj does not campaign in this tick.
        """
        if not self._others or self._raft_state() == _LEADER or self._election_deadline() >= now:
            return
        if self._transfer_in_progress() or not self._connected_to_anyone():
            return
        won = self._pre_vote
        if (
            won is not None
            and won.won
            and won.still_valid(
                current_term=self.raftCurrentTerm,
                now=now,
                leader_heard_at=self._leader_heard_at,
                max_age_s=self._election_max_s,
            )
        ):
            self._pre_vote = None
            return  # pysyncobj campaigns in this tick
        self._start_pre_vote(now)
        self._set_election_deadline(now + self._pre_vote_retry_s())

    def _pre_vote_retry_s(self) -> float:
        """How long until the next round if this one is not won: a quarter to a half of the shortest election
        timeout. Short, because the usual loss is a near miss: after a leader died, the peer asked may have
        heard its last heartbeat a few milliseconds after this node did, and a full election timeout (up to
        1.2 s) of waiting would then add to every such failover; rounds change nothing on the peers, so an
        isolated node asking 5-10 times a second costs a few small messages."""
        return self._election_min_s * (0.25 + 0.25 * random.random())

    def _start_pre_vote(self, now: float) -> None:
        self._pre_vote_rounds += 1
        self.pre_votes_started += 1
        position = self._log_position()
        round_ = PreVoteRound(
            round_id=self._pre_vote_rounds,
            term=self.raftCurrentTerm + 1,
            cluster_size=self._cluster_size,
            started_at=now,
            candidate=self.selfNode.id,
        )
        self._pre_vote = round_
        message = {
            "type": PRE_VOTE,
            "term": round_.term,
            "round": round_.round_id,
            "last_log_index": position.index,
            "last_log_term": position.term,
        }
        for node in self._others:
            self._transport().send(node, dict(message))

    def answer_pre_vote(self, node: Any, message: dict[str, Any]) -> dict[str, Any]:
        """The answer to a peer's ``pre_vote`` (changes nothing here)."""
        voter = Voter(
            current_term=self.raftCurrentTerm,
            voted_for=self._voted_for(),
            log=self._log_position(),
            is_leader=self._raft_state() == _LEADER,
            leader_heard_at=self._leader_heard_at,
        )
        granted = self._hooks_ready and grants_pre_vote(
            candidate=node.id,
            term=int(message["term"]),
            candidate_log=LogPosition(int(message["last_log_term"]), int(message["last_log_index"])),
            voter=voter,
            now=self._clock(),
            election_min_s=self._election_min_s,
        )
        return {"type": PRE_VOTE_RESPONSE, "term": message["term"], "round": message["round"], "granted": granted}

    def count_pre_vote(self, node: Any, message: dict[str, Any]) -> None:
        """A peer's answer to this node's round: a majority of grants lets the election start at the next tick."""
        round_ = self._pre_vote
        if round_ is None or not message.get("granted") or message.get("round") != round_.round_id:
            return
        if message.get("term") != round_.term or round_.won:
            return
        if round_.grant(node.id) and self._raft_state() != _LEADER:
            self.pre_votes_won += 1
            self._set_election_deadline(0.0)

    def heard_append_entries(self, message: dict[str, Any]) -> None:
        """An ``append_entries`` from a leader of this node's term or a later one: contact with a leader."""
        if int(message.get("term", -1)) >= self.raftCurrentTerm:
            self._leader_heard_at = self._clock()

    def refuse_forwarded(self, message: dict[str, Any]) -> dict[str, Any] | None:
        """A proposal forwarded to this node while it leads without contact with a majority: refused (nothing is
        appended; the forwarding node answers ``NoLeader``), else None and pysyncobj handles it."""
        if self._raft_state() != _LEADER or self.contact_silence_s <= self.contact_bounds.refuse_after_s:
            return None
        if "request_id" not in message:
            return {}  # nobody waits for an answer: drop it
        self.proposals_refused += 1
        return {
            "type": "apply_command_response",
            "request_id": message["request_id"],
            "error": FAIL_REASON.MISSING_LEADER,
        }

    def _publish_contact(self, now: float) -> None:
        if self._raft_state() == _LEADER:
            heard = self._last_response_times()
            silence = majority_silence(now, (heard.get(n, -math.inf) for n in self._others), self._cluster_size)
        else:
            silence = leader_silence(now, self._getLeader() is not None, self._leader_heard_at)
        self.contact_silence_s = silence
        lost = silence > self.contact_bounds.give_up_after_s
        if lost and not self._contact_lost:
            self._contact_lost = True
            callback = self.on_contact_lost
            if callback is not None:
                who = "a majority" if self._raft_state() == _LEADER else "a leader"
                callback(
                    f"this node has not heard from {who} for {silence:.2f} s"
                    if math.isfinite(silence)
                    else "this node knows no leader"
                )
        elif not lost:
            self._contact_lost = False

    # pysyncobj internals: every name-mangled access of this adapter (listed in the module docstring).

    def _raft_state(self) -> int:
        return int(self._SyncObj__raftState)

    def _election_deadline(self) -> float:
        return float(self._SyncObj__raftElectionDeadline)

    def _set_election_deadline(self, deadline: float) -> None:
        self._SyncObj__raftElectionDeadline = deadline

    def _connected_to_anyone(self) -> bool:
        return bool(self._SyncObj__connectedToAnyone())

    def _transfer_in_progress(self) -> bool:
        return bool(self._SyncObj__transferInProgress)

    def _voted_for(self) -> str | None:
        voted: str | None = self._SyncObj__votedForNodeId
        return voted

    def _last_response_times(self) -> dict[Any, float]:
        times: dict[Any, float] = self._SyncObj__lastResponseTime
        return times

    def _log_position(self) -> LogPosition:
        return LogPosition(int(self._SyncObj__getCurrentLogTerm()), int(self._SyncObj__getCurrentLogIndex()))

    def _transport(self) -> FlushingTransport:
        transport: FlushingTransport = self._SyncObj__transport
        return transport
