"""``python -m bench``: ``race`` (raft-queue, RabbitMQ and NATS JetStream side by side; see bench/DESIGN.md),
``solo`` (raft-queue alone, with end-to-end latency and transactions) and ``memory`` (a node with a backlog)."""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from dataclasses import asdict
from pathlib import Path

from bench import memory, solo
from bench.race import SYSTEMS, RaceConfig, run_race
from bench.table import format_goals, goals, table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench")
    sub = parser.add_subparsers(dest="command", required=True)
    race = sub.add_parser("race", help="start each system's 3-node cluster in turn and run the same workloads")
    race.add_argument("--systems", default=",".join(SYSTEMS), help=f"comma-separated, of {', '.join(SYSTEMS)}")
    race.add_argument("--seconds", type=float, default=5.0, help="duration of each timed workload (default 5)")
    race.add_argument("--warmup", type=float, default=1.0, help="untimed warm-up before each (default 1)")
    race.add_argument("--in-flight", default="1,64,256", help="publish concurrencies (default 1,64,256)")
    race.add_argument("--backlog", type=int, default=20_000, help="messages to drain in consume + ack (default 20000)")
    race.add_argument("--message-bytes", type=int, default=256, help="body size (default 256)")
    race.add_argument("--json", type=Path, help="also write every measurement to this file")
    one = sub.add_parser(
        "solo",
        help="raft-queue alone: throughput and latency (starts its own 3-node cluster unless --urls is given)",
        description="Publish (one message per request at each --in-flight), batch publish (64 per request), "
        "consume + ack a backlog, end-to-end latency (enqueue to receive) and transactions; prints msgs/s, p50 "
        "and p99. A publish counts once its 2xx arrived, i.e. after it was fsynced on a majority.",
    )
    one.add_argument("--urls", help="comma-separated node URLs of a running cluster (default: start one)")
    one.add_argument("--seconds", type=float, default=5.0, help="duration of each workload (default: 5)")
    one.add_argument("--message-bytes", type=int, default=256, help="message body size (default: 256)")
    one.add_argument(
        "--in-flight", default="1,64,256", help="publish concurrencies, comma-separated (default: 1,64,256)"
    )
    one.add_argument("--backlog", type=int, default=20000, help="messages to consume in the consume workload")
    one.add_argument("--json", type=Path, help="also write the results to this JSON file")
    memory = sub.add_parser("memory", help="RSS with a large backlog, and restart-to-ready time (raft-queue only)")
    memory.add_argument("--messages", type=int, default=1_000_000, help="backlog size (default 1000000)")
    memory.add_argument("--message-bytes", type=int, default=256, help="body size (default 256)")
    memory.add_argument("--snapshot-journal-mb", type=int, default=64, help="the nodes' journal bound (default 64)")
    memory.add_argument("--json", type=Path, help="also write the figures to this file")
    memory.add_argument("--keep", type=Path, help="use (and keep) this new directory for data and node logs")
    args = parser.parse_args(argv)
    if args.command == "memory":
        return _memory(args)
    if args.command == "solo":
        return _solo(args, one)
    systems = [s.strip() for s in args.systems.split(",") if s.strip()]
    unknown = [s for s in systems if s not in SYSTEMS]
    try:
        in_flight = tuple(int(x) for x in args.in_flight.split(",") if x.strip())
    except ValueError:
        in_flight = ()
    if unknown or not systems or not in_flight or min(in_flight) < 1 or args.seconds <= 0 or args.backlog < 0:
        parser.error(f"bad --systems ({unknown or 'empty'}), --in-flight, --seconds or --backlog")
    cfg = RaceConfig(args.seconds, args.warmup, in_flight, args.backlog, args.message_bytes)
    results = run_race(systems, cfg, lambda line: print(line, file=sys.stderr, flush=True))
    print(
        f"{cfg.body_bytes}-byte messages, {cfg.seconds:g} s per workload after {cfg.warmup:g} s warm-up, "
        f"{os.cpu_count()} CPUs, 3 nodes each on 127.0.0.1, one client process (uvloop); systems run in turn"
    )
    for key in systems:
        print(f"  {key}: {SYSTEMS[key].label}; durability: {SYSTEMS[key].durability}")
    print(table(results, systems))
    found = goals(results)
    if found:
        print("goals (ratios measured in this run):")
        print(format_goals(found))
    if args.json is not None:
        args.json.write_text(json.dumps([asdict(r) for r in results], indent=2) + "\n")
    return 0


def _solo(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    try:
        in_flight = [int(x) for x in args.in_flight.split(",") if x.strip()]
    except ValueError:
        parser.error(f"--in-flight: {args.in_flight!r} is not a list of whole numbers")
    if not in_flight or min(in_flight) < 1 or args.seconds <= 0 or args.message_bytes < 1 or args.backlog < 0:
        parser.error("solo: --in-flight, --seconds and --message-bytes must be positive, --backlog >= 0")
    urls = [u.strip().rstrip("/") for u in args.urls.split(",")] if args.urls else None
    return solo.run_solo(
        urls,
        seconds=args.seconds,
        size=args.message_bytes,
        in_flight=in_flight,
        backlog=args.backlog,
        json_path=args.json,
    )


def _memory(args: argparse.Namespace) -> int:
    if args.messages < 1 or args.message_bytes < 1 or args.snapshot_journal_mb < 1:
        raise SystemExit("python -m bench memory: --messages, --message-bytes and --snapshot-journal-mb must be >= 1")
    if args.keep is not None:
        args.keep.mkdir(parents=True)
        report = memory.run(args.keep, args.messages, args.message_bytes, args.snapshot_journal_mb)
    else:
        with tempfile.TemporaryDirectory(prefix="memory-bench-") as tmp:
            report = memory.run(Path(tmp), args.messages, args.message_bytes, args.snapshot_journal_mb)
    print(memory.format_report(report))
    if args.json is not None:
        args.json.write_text(memory.report_json(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
