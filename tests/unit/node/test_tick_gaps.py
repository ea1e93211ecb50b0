"""TickGaps: how long the Raft tick thread went without a tick (a stall longer than the election timeout on a
follower is an election; on a leader, a heartbeat gap)."""

from __future__ import annotations

import logging

import pytest

from raft_queue.node.tick_gaps import TickGaps


def test_gaps_are_measured_and_stalls_are_counted_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    now = [100.0]
    gaps = TickGaps(warn_s=0.25, clock=lambda: now[0])
    with caplog.at_level(logging.WARNING, logger="raft_queue.node.tick_gaps"):
        gaps.tick()  # the first tick has nothing to compare with
        for step in (0.01, 0.01, 0.3, 0.02, 0.6, 0.01):
            now[0] += step
            gaps.tick()
    assert gaps.max_gap_s == pytest.approx(0.6)
    assert gaps.stalls == 2
    stalls = [r.getMessage() for r in caplog.records if "stalled" in r.getMessage()]
    assert stalls == ["the Raft tick thread stalled for 0.30 s", "the Raft tick thread stalled for 0.60 s"]
