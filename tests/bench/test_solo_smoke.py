"""A few-second smoke of ``python -m bench solo``: it starts and stops its own cluster and prints real numbers."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.cluster


def test_bench_command_prints_and_writes_numbers(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    cmd = [sys.executable, "-m", "bench", "solo", "--seconds", "0.5", "--in-flight", "1,8"]
    result = subprocess.run(
        [*cmd, "--backlog", "640", "--json", str(out)], capture_output=True, text=True, timeout=180, check=False
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "msgs/s" in result.stdout
    rows = json.loads(out.read_text())
    assert all("system" not in r for r in rows)  # the rows as they were before the race's Measurement
    assert [r["workload"] for r in rows][:2] == ["publish", "publish"]
    assert {r["in_flight"] for r in rows[:2]} == {1, 8}
    for r in rows:
        assert r["messages"] > 0 and r["msgs_per_s"] > 0 and r["p99_ms"] >= r["p50_ms"] > 0, r
    e2e, consume, txn = rows[-3:]
    assert e2e["workload"].startswith("end-to-end")
    assert consume["workload"].startswith("consume") and consume["messages"] == 640
    assert txn["workload"].startswith("transactions") and txn["in_flight"] == 16
