"""Consume-transform-produce, exactly once: every order in one queue becomes exactly one settlement in another.

Each order is received with a lease, transformed, and then its ack and the settlement commit as ONE transaction
whose ID is derived from the order's message ID. Whatever fails (this process, a node, the network), retrying
that transaction can never produce a second settlement: the ID is recorded with the outcome, and the same ID is
answered with the recorded outcome. See docs/exactly-once.md.

    python examples/consume_transform_produce.py --urls http://127.0.0.1:8001,http://127.0.0.1:8002 \\
        --source orders --target settlements --until-empty

Run ``make run`` first for a local cluster. Stop with Ctrl-C at any moment and start it again: nothing is lost
and nothing is settled twice.
"""

from __future__ import annotations

import argparse
import json
import sys

from raft_queue_client import (
    AckOp,
    Client,
    EnqueueOp,
    OutcomeUnknownError,
    ReceivedMessage,
    TransactionAborted,
    TransactionConflict,
    TransactionOp,
)


def transform(order: ReceivedMessage) -> str:
    """The business logic: here, a settlement instruction for the order (must be a pure function of the order)."""
    try:
        fields = json.loads(order.body)
    except ValueError:
        fields = {"raw": order.body}
    return json.dumps({"settles": order.message_id, "order": fields}, sort_keys=True)


def settle_one(client: Client, source: str, target: str, order: ReceivedMessage) -> str:
    """Acks ``order`` and publishes its settlement atomically; returns what happened."""
    transaction_id = f"settle-{order.message_id}"
    operations: list[TransactionOp] = [AckOp(source, [order]), EnqueueOp(target, [transform(order)])]
    while True:
        try:
            result = client.transact(transaction_id, operations)
        except OutcomeUnknownError:
            continue  # the client already retried; the same ID again is always safe
        except TransactionAborted as aborted:
            # Typically the lease ran out before the commit ('stale' receipt): nothing was applied, the order
            # is visible again, and whoever receives it next settles it under the same transaction ID.
            return f"aborted ({aborted.reason}): {[f.code for f in aborted.failures]}"
        except TransactionConflict:
            # Our lease ran out, another worker received the order again and committed this ID first (with its
            # own receipt): the order is settled exactly once, by that worker.
            info = client.get_transaction(transaction_id)
            return f"settled by another worker at index {info.decided_index}"
        return "duplicate (settled earlier)" if result.duplicate else f"settled at index {result.decided_index}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--urls", required=True, help="comma-separated node URLs")
    parser.add_argument("--source", default="orders")
    parser.add_argument("--target", default="settlements")
    parser.add_argument("--until-empty", action="store_true", help="stop when the source has nothing to receive")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    with Client([u.strip() for u in args.urls.split(",") if u.strip()]) as client:
        client.create_queue(args.target)
        settled = 0
        while True:
            orders = client.receive(args.source, max_messages=10, visibility_timeout_s=30, wait_s=2)
            if not orders and args.until_empty:
                break
            for order in orders:
                outcome = settle_one(client, args.source, args.target, order)
                settled += outcome.startswith("settled at")
                if not args.quiet:
                    print(f"{order.message_id}: {outcome}", flush=True)
    print(f"settled {settled} orders", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
