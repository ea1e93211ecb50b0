"""The snapshot writer process: ``python -m raft_queue.node.raft.dump_writer CHECKPOINT OUT PARENT_PID``, metadata
on stdin.

``BackgroundSnapshots`` runs the dump here rather than on a thread of the node. On a thread, the dump's Python loop
(2 million keys for 1 million queued messages) shared the GIL with pysyncobj's tick thread, and every system call
the tick thread made (a socket read, a journal fdatasync) cost it up to a switch interval to get the GIL back:
ticks of 0.26-0.78 s were measured on followers while they dumped, against an election timeout of 0.4-1.2 s.

The process opens the frozen copy (a RocksDB checkpoint the node made and keeps open) read-only, writes ``OUT``
with ``state_machine.snapshot.dump`` (fsynced), and prints the number of keys. It renames nothing: the node does
that once the process succeeded. It stops, leaving an incomplete ``OUT`` (which the node never renames and
removes at its next start), as soon as its parent is gone: a node killed mid-dump leaves no writer behind.
"""

from __future__ import annotations

import os
import sys

from state_machine import snapshot
from state_machine.rocks import RocksKV

EXIT_USAGE = 2
EXIT_PARENT_GONE = 3


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        sys.stderr.write(
            "usage: python -m raft_queue.node.raft.dump_writer CHECKPOINT OUT PARENT_PID (metadata on stdin)\n"
        )
        return EXIT_USAGE
    checkpoint, out, parent = argv[0], argv[1], int(argv[2])
    meta = sys.stdin.buffer.read()
    source = RocksKV(checkpoint, read_only=True)
    try:
        count = snapshot.dump(source, out, meta, should_stop=lambda: os.getppid() != parent)
    except snapshot.DumpAborted:
        return EXIT_PARENT_GONE
    finally:
        source.close()
    sys.stdout.write(f"{count}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
