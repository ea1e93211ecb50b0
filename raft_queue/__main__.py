"""``python -m raft_queue``: the same as the ``raft-queue`` script."""

from raft_queue.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
