"""The chaos smoke: every nemesis, seeded, ~8 s of workload each; the run's report must be valid.

Run with ``make chaos-smoke``. It is not yet part of ``make test`` because it fails today, for a real reason the
suite found: pysyncobj 0.3.17 truncates a follower's log on any append_entries that overlaps entries it already
holds (not only on a conflict, as Raft requires), and logs CRITICAL "truncating already-applied log entries";
the logs checker rightly flags it. The journal fix (truncate only on a real conflict) moves this into
``make test``.

Each run starts its own proxies and nodes (stopped by PID when it ends, pass or fail: ``Cluster.close`` in the
runner's ``finally``) and checks the history with every checker. Only the linearizability checker may answer
"unknown" (see the test). On failure the message names the checkers that
failed and where the history, report and node logs are.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from chaos.history import Json
from chaos.nemesis import SCENARIOS
from chaos.runner import run

pytestmark = pytest.mark.cluster

SEED = 20261122
DURATION_S = 8.0


def _failures(report: dict[str, Json]) -> dict[str, Json]:
    """Each checker whose result is not valid, with the part of its result that says why."""
    out: dict[str, Json] = {}
    for name, result in report.items():
        if not isinstance(result, dict) or "valid" not in result or result["valid"] is True:
            continue
        keep = ("valid", "problems", "hits", "hit_counts", "lost", "duplicated", "unexpected", "reason", "unrecovered")
        out[name] = {k: v for k, v in result.items() if k in keep}
        if name == "linear" and isinstance(result.get("queues"), dict):
            queues = result["queues"]
            assert isinstance(queues, dict)
            out[name] = {
                q: {"valid": r.get("valid"), "reason": r.get("reason")}
                for q, r in queues.items()
                if isinstance(r, dict)
            }
    return out


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_chaos_scenario_is_valid(scenario: str, tmp_path: Path) -> None:
    out = tmp_path / scenario
    report = run(scenario, SEED, DURATION_S, out, print_row=False)
    assert (out / "history.jsonl").stat().st_size > 0
    assert json.loads((out / "report.json").read_text())["valid"] == report["valid"]
    summary = report["summary"]
    assert isinstance(summary, dict)
    assert isinstance(summary["operations"], int) and summary["operations"] > 0
    failures = _failures(report)
    # "unknown" is tolerated from the linearizability checker only: an ack whose outcome was unknown, retried with
    # the same receipt, truthfully answers "stale" once the first one had applied, and the model calls that "outside
    # the model". Every other checker must say valid, and no checker may say False.
    tolerated = {"linear"} if report["valid"] == "unknown" else set()
    assert report["valid"] is not False and set(failures) <= tolerated, (
        f"{scenario} seed={SEED}: {summary} (history and report in {out})\n" + json.dumps(failures, indent=1)[:6000]
    )
