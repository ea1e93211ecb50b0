"""CheckQuorum's bookkeeping, free of pysyncobj so that it can be tested with a fake clock.

A node "has contact" when it has recently heard from the ones that let it commit: a leader from a majority (its
followers' ``next_node_idx`` answers, which pysyncobj already records per follower for ``leaderFallbackTimeout``),
a follower from its leader (an ``append_entries``, heartbeats included). ``silence`` is how long ago that was.
Two bounds act on it (raft_queue/DESIGN.md, "CheckQuorum"):

- ``refuse_after_s``: a node silent for longer refuses *new* proposals at once with ``NoLeader`` (nothing was
  proposed, so the client retries elsewhere safely) instead of proposing into a log that cannot commit.
- ``give_up_after_s``: a node silent for longer answers the operations it already proposed ``OutcomeUnknown`` at
  once (they may still commit) instead of holding them to the request timeout.

The leader's own step-down is pysyncobj's ``leaderFallbackTimeout`` (set to the longest election timeout).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

#: Heartbeat periods of silence before a node refuses new proposals (see ContactBounds.for_timeouts).
REFUSE_AFTER_HEARTBEATS = 4


@dataclass(frozen=True)
class ContactBounds:
    refuse_after_s: float
    give_up_after_s: float

    @classmethod
    def for_timeouts(cls, heartbeat_s: float, election_min_s: float) -> ContactBounds:
        """Four heartbeat periods, at most half the shortest election timeout, to refuse; the shortest election
        timeout to give up on what was proposed.

        A follower answers every heartbeat, so a leader in contact has heard from a majority at most one period
        plus a round trip ago; four periods tolerate three lost or late rounds in a row (a tick thread held for
        up to ~150 ms by an fsync or the GIL: the node logs a stall only above 250 ms). Half the shortest election
        timeout keeps the refusal well before the followers could have elected someone else, so a client moves
        on before the cluster has a new leader for it. In-flight operations are given up after the shortest
        election timeout: by then the followers may be electing, and no answer can come before contact is back.
        """
        refuse = min(REFUSE_AFTER_HEARTBEATS * heartbeat_s, election_min_s / 2)
        return cls(refuse_after_s=refuse, give_up_after_s=max(election_min_s, refuse))


def majority_silence(now: float, heard_at: Iterable[float], cluster_size: int) -> float:
    """Seconds since a leader last heard from a majority of ``cluster_size`` voters, itself included.

    ``heard_at`` holds the time of each follower's last answer. The leader counts itself as heard now, so it
    needs ``cluster_size // 2`` followers: the silence is the age of the ``cluster_size // 2``-th most recent
    answer (infinite when it has fewer answers than that on record).
    """
    needed = cluster_size // 2
    if needed == 0:
        return 0.0
    latest = sorted(heard_at, reverse=True)
    if len(latest) < needed:
        return math.inf
    return max(0.0, now - latest[needed - 1])


def leader_silence(now: float, leader_known: bool, leader_heard_at: float | None) -> float:
    """Seconds since a follower last heard from its leader (infinite when it knows none, or never heard it)."""
    if not leader_known or leader_heard_at is None:
        return math.inf
    return max(0.0, now - leader_heard_at)
