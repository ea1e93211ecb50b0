"""``python -m chaos``: fault-injection tools that drive real node processes from outside."""

from __future__ import annotations

import argparse

from chaos import failover


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m chaos", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    fo = sub.add_parser("failover", help="kill -9 the leader repeatedly; print time to the first ok write")
    fo.add_argument("--kills", type=int, default=10, help="how many leader kills (default: 10)")
    fo.add_argument("--nodes", type=int, default=3, choices=(3, 5), help="cluster size (default: 3)")
    args = parser.parse_args(argv)
    return failover.run(args.kills, args.nodes)


if __name__ == "__main__":
    raise SystemExit(main())
