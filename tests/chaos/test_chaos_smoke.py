"""The chaos smoke, part of ``make test``: every nemesis kind, seeded, ~8 s of workload each; the run must be valid.

Each run starts its own proxies and nodes (stopped by PID when it ends, pass or fail: the runner closes the cluster
in a ``finally``; the power-loss runs also unmount and delete their loop disks) and checks the history with every
checker, the goodput criterion included for the partition, pause and kill nemeses (``chaos.runner.GOODPUT_JUDGED``;
``chaos.runner.JUDGE_GOODPUT`` switches it off). On failure the message names the checkers that failed and where
the history, report and node logs are; ``python -m chaos run --scenario S --seed 20261122 --duration 8 --out DIR``
replays it. ``make chaos`` runs the long suite (5 nodes, minutes per scenario, several seeds).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from chaos.disk import unavailable_reason
from chaos.history import Json
from chaos.nemesis import POWER_LOSS, SCENARIOS
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
        keep = (
            *("valid", "problems", "hits", "hit_counts", "lost", "duplicated", "unexpected", "reason"),
            *("unrecovered", "too_slow", "failover_too_slow", "slow_restarts", "no_restart_measured", "divergences"),
            *("slow_recoveries", "no_goodput_baseline"),
        )
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
    if scenario in POWER_LOSS and (reason := unavailable_reason()) is not None:
        pytest.skip(reason)
    out = tmp_path / scenario
    report = run(scenario, SEED, DURATION_S, out, print_row=False)
    assert (out / "history.jsonl").stat().st_size > 0
    assert (out / "history.png").read_bytes().startswith(b"\x89PNG")
    assert json.loads((out / "report.json").read_text())["valid"] == report["valid"]
    summary = report["summary"]
    assert isinstance(summary, dict)
    assert isinstance(summary["operations"], int) and summary["operations"] > 0
    assert report["valid"] is True, (
        f"{scenario} seed={SEED}: {summary} (history and report in {out})\n"
        + json.dumps(_failures(report), indent=1)[:6000]
    )
