"""A seconds-long race of raft-queue against NATS JetStream through the real harness (RabbitMQ's start alone
takes longer than this whole test: the full race is ``make race``)."""

from __future__ import annotations

import os
import shutil

import pytest

from bench.procs import descendants
from bench.race import RaceConfig, run_race
from bench.table import goals, table

pytestmark = pytest.mark.cluster


def test_a_short_race_measures_both_systems_and_leaves_no_process_behind() -> None:
    assert shutil.which("nats-server"), "nats-server is missing: make test installs it with bench/install.sh"
    before = set(descendants(os.getpid()))
    lines: list[str] = []
    cfg = RaceConfig(seconds=0.3, warmup=0.1, in_flight=(1, 8), backlog=640, body_bytes=64)
    results = run_race(["raft-queue", "nats"], cfg, lines.append)
    assert {(r.system, r.workload.split(" (")[0], r.in_flight) for r in results} == {
        (system, workload, n)
        for system in ("raft-queue", "nats")
        for workload, n in (("publish", 1), ("publish", 8), ("batch publish", 4), ("consume + ack", 4))
    }
    for r in results:
        assert r.messages > 0 and r.msgs_per_s > 0 and r.p99_ms >= r.p50_ms > 0, r
    assert all(r.messages == 640 for r in results if r.workload.startswith("consume"))
    text = table(results, ["raft-queue", "nats"])
    assert "ours/nats" in text
    [batch_goal] = goals(results)  # RabbitMQ did not run: only the goal against NATS can be judged
    assert batch_goal.text.startswith("batch publish: >= 3x NATS single-message publish")
    assert lines and all("cluster" in line for line in lines)
    assert set(descendants(os.getpid())) <= before, "the race left processes behind"
