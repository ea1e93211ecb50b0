"""The long chaos suite: every scenario under several seeds, one row each, one table at the end.

``python -m chaos suite --out DIR [--nodes 5] [--seeds 1,2,3] [--duration 60] [--scenario NAME ...]`` runs each
(scenario, seed) with :func:`chaos.runner.run` into ``DIR/<scenario>-s<seed>/`` and writes ``DIR/table.md`` (the
Markdown table, rewritten after every run so an interrupted suite keeps what it measured) and ``DIR/summary.json``.
A run that cannot start (e.g. the power-loss scenarios without root) is a row with verdict ``error`` and the
reason; it is never counted as a pass. The exit status is 0 only when every row is valid.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path

from chaos.history import Json
from chaos.runner import run
from chaos.verdict import format_table


def run_suite(
    out_dir: Path, scenarios: Sequence[str], seeds: Sequence[int], duration_s: float, nodes: int
) -> list[dict[str, Json]]:
    out_dir.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Json]] = []
    for scenario in scenarios:
        for seed in seeds:
            started = time.monotonic()
            row: dict[str, Json]
            try:
                report = run(scenario, seed, duration_s, out_dir / f"{scenario}-s{seed}", nodes, print_row=False)
            except Exception as exc:  # one broken run must not hide the others' results
                row = {"run": f"{scenario} seed={seed} {duration_s:g}s", "verdict": "error", "error": repr(exc)}
            else:
                summary = report["summary"]
                assert isinstance(summary, dict)
                row = dict(summary)
            row["wall_s"] = round(time.monotonic() - started, 1)
            rows.append(row)
            (out_dir / "table.md").write_text(format_table(rows) + "\n", encoding="utf-8")
            (out_dir / "summary.json").write_text(json.dumps(rows, indent=1) + "\n", encoding="utf-8")
            print(format_table([row]).splitlines()[-1], flush=True)
    print(format_table(rows), flush=True)
    for row in rows:
        if row.get("error"):
            print(f"{row['run']}: {row['error']}", flush=True)
    return rows


def all_valid(rows: Sequence[dict[str, Json]]) -> bool:
    return bool(rows) and all(row.get("verdict") == "valid" for row in rows)
