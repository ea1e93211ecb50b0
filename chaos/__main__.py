"""``python -m chaos``: fault-injection tools that drive real node processes from outside."""

from __future__ import annotations

import argparse
from pathlib import Path

from chaos import failover
from chaos.nemesis import SCENARIOS


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m chaos", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    fo = sub.add_parser("failover", help="kill -9 the leader repeatedly; print time to the first ok write")
    fo.add_argument("--kills", type=int, default=10, help="how many leader kills (default: 10)")
    fo.add_argument("--nodes", type=int, default=3, choices=(3, 5), help="cluster size (default: 3)")
    rn = sub.add_parser("run", help="run a workload under one nemesis; check the history; exit 0 iff valid")
    rn.add_argument("--scenario", required=True, choices=SCENARIOS, help="the nemesis")
    rn.add_argument("--seed", type=int, default=0, help="seeds the nemesis schedule (default: 0)")
    rn.add_argument("--duration", type=float, default=30.0, help="seconds of workload under faults (default: 30)")
    rn.add_argument("--out", type=Path, required=True, help="a new directory for the history, report and node logs")
    rn.add_argument("--nodes", type=int, default=3, choices=(3, 5), help="cluster size (default: 3)")
    su = sub.add_parser("suite", help="every scenario under several seeds; print one table; exit 0 iff all valid")
    su.add_argument("--out", type=Path, required=True, help="a directory for every run and table.md")
    su.add_argument("--nodes", type=int, default=5, choices=(3, 5), help="cluster size (default: 5)")
    su.add_argument("--seeds", default="1,2,3", help="comma-separated seeds (default: 1,2,3)")
    su.add_argument("--duration", type=float, default=60.0, help="seconds of workload per run (default: 60)")
    su.add_argument(
        "--scenario", action="append", choices=SCENARIOS, help="only this scenario (repeatable; default: all)"
    )
    args = parser.parse_args(argv)
    if args.command == "suite":
        from chaos import suite

        seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
        rows = suite.run_suite(args.out, args.scenario or SCENARIOS, seeds, args.duration, args.nodes)
        return 0 if suite.all_valid(rows) else 1
    if args.command == "run":
        from chaos import runner

        report = runner.run(args.scenario, args.seed, args.duration, args.out, args.nodes)
        return 0 if report["valid"] is True else 1
    return failover.run(args.kills, args.nodes)


if __name__ == "__main__":
    raise SystemExit(main())
