"""The race's harness, table and process handling, without any broker."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench.harness import Measurement, Op, closed_loop, drain, measurement, percentile, timed
from bench.procs import Proc, descendants
from bench.table import format_goals, goals, table


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 0.5) == 50.0
    assert percentile(values, 0.99) == 99.0
    assert percentile(values, 1.0) == 100.0
    assert percentile([7.0], 0.99) == 7.0
    assert percentile([], 0.5) == 0.0


def test_measurement_counts_messages_not_requests() -> None:
    m = measurement("s", "batch", 4, messages=640, seconds=2.0, lat=[0.010, 0.020, 0.030])
    assert m.msgs_per_s == 320.0 and m.p50_ms == 20.0 and m.p99_ms == 30.0


def test_closed_loop_keeps_exactly_n_in_flight_and_counts_what_ops_return() -> None:
    active = 0
    peak = 0

    async def op() -> int:
        nonlocal active, peak
        active += 1
        peak = max(peak, active)
        await asyncio.sleep(0.002)
        active -= 1
        return 3

    messages, elapsed, lat = asyncio.run(closed_loop(op, in_flight=8, seconds=0.2))
    assert peak == 8
    assert messages == 3 * len(lat) and len(lat) >= 8
    assert elapsed >= 0.2
    assert all(t >= 0.002 for t in lat)


def test_timed_drops_the_warm_up() -> None:
    calls = 0

    async def op() -> int:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.001)
        return 1

    messages, _, lat = asyncio.run(timed(op, in_flight=1, seconds=0.05, warmup=0.05))
    assert messages == len(lat) < calls


def test_drain_stops_at_the_total_and_gives_each_loop_its_own_consumer() -> None:
    left = 250
    seen: list[int] = []

    def take_for(i: int) -> Op:
        async def take() -> int:
            nonlocal left
            await asyncio.sleep(0)
            seen.append(i)
            n = min(100, left)
            left -= n
            return n

        return take

    consumed, _, lat = asyncio.run(drain([take_for(0), take_for(1)], total=250, timeout=5))
    assert consumed == 250 and left == 0 and len(lat) == 3
    assert set(seen) == {0, 1}


def _m(system: str, workload: str, n: int, rate: float, *latency_ms: float) -> Measurement:
    p50, p99 = latency_ms
    return Measurement(system, workload, n, int(rate), 1.0, rate, p50, p99)


RESULTS = [
    _m("raft-queue", "publish", 1, 400, 2.5, 4.0),
    _m("raft-queue", "publish", 64, 7000, 20.0, 40.0),
    _m("raft-queue", "batch publish (64/request)", 4, 20000, 12.0, 20.0),
    _m("raft-queue", "consume + ack (100/take)", 4, 9000, 30.0, 90.0),
    _m("rabbitmq", "publish", 1, 850, 1.1, 2.4),
    _m("rabbitmq", "publish", 64, 3500, 16.0, 51.0),
    _m("rabbitmq", "consume + ack (100/take)", 4, 2700, 2.0, 80.0),
    _m("nats", "publish", 1, 1800, 0.5, 1.5),
    _m("nats", "publish", 64, 17000, 3.4, 8.8),
]


def test_table_has_one_row_per_workload_and_ours_over_peer_ratios() -> None:
    text = table(RESULTS, ["raft-queue", "rabbitmq", "nats"])
    lines = text.splitlines()
    assert len(lines) == 1 + 4
    publish64 = next(line for line in lines if line.startswith("publish") and " 64 " in line)
    assert "2.00x" in publish64  # 7000 / 3500
    assert "0.41x" in publish64  # 7000 / 17000
    batch = next(line for line in lines if line.startswith("batch"))
    assert batch.count(" - ") >= 2  # no peer ran a batch row here


def test_goals_are_judged_from_the_measured_ratios() -> None:
    by_text = {g.text: g for g in goals(RESULTS)}
    assert by_text["publish, 64 in flight: >= 2x RabbitMQ msgs/s"].met is True
    assert by_text["publish, 64 in flight: p99 <= RabbitMQ's"].met is True
    assert by_text["publish, 1 in flight: p50 <= RabbitMQ's"].met is False
    batch = next(g for g in by_text.values() if g.text.startswith("batch publish"))
    assert batch.met is False and batch.measured == "1.18x" and "64 in flight" in batch.text
    assert by_text["consume + ack of a backlog: >= 2.5x RabbitMQ"].met is True
    assert "[MISSED] publish, 1 in flight" in format_goals(goals(RESULTS))


def test_goals_need_both_sides() -> None:
    assert goals([r for r in RESULTS if r.system != "rabbitmq"])[0].text.startswith("batch publish")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"


def test_stop_ends_the_whole_tree_even_a_child_in_its_own_session(tmp_path: Path) -> None:
    """Like beam.smp's helpers: a grandchild that left the group must still be stopped, by its PID."""
    script = (
        "import subprocess, sys, time\n"
        "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'], start_new_session=True)\n"
        "time.sleep(60)\n"
    )
    proc = Proc("tree", [sys.executable, "-c", script], log=tmp_path / "tree.log")
    deadline = time.monotonic() + 10
    while not descendants(proc.pid):
        assert time.monotonic() < deadline, "the child never started"
        time.sleep(0.02)
    family = [proc.pid, *descendants(proc.pid)]
    try:
        proc.stop()
        assert not any(_alive(p) for p in family)
    finally:
        for pid in family:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)


def test_stop_of_an_already_exited_process_is_quiet(tmp_path: Path) -> None:
    proc = Proc("quick", [sys.executable, "-c", "pass"], log=tmp_path / "quick.log")
    proc.popen.wait(10)
    proc.stop()
    assert not _alive(proc.pid)


@pytest.mark.parametrize(
    "bad",
    [
        ["race", "--systems", "kafka"],
        ["race", "--in-flight", "0"],
        ["race", "--seconds", "-1"],
        ["solo", "--in-flight", "0"],
        ["solo", "--in-flight", "one"],
    ],
)
def test_the_command_refuses_bad_arguments(bad: list[str]) -> None:
    done = subprocess.run([sys.executable, "-m", "bench", *bad], capture_output=True, text=True, check=False)
    assert done.returncode == 2 and "error" in done.stderr
    assert done.stdout == "" and "Traceback" not in done.stderr
