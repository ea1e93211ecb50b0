"""Tools that ship with the server but are not part of it: ``dev_cluster`` (``raft-queue dev-cluster``,
``make run``) starts a local cluster of nodes as child processes.

They sit apart from the runtime (``raft_queue.node``) because they only drive nodes from outside: they start
``python -m raft_queue node`` processes, watch them over HTTP and stop them by PID, importing nothing of Raft,
RocksDB or the HTTP layer (only ``raft_queue.config``, to validate what they will pass on the command line). A
node never imports them. Repository-only tools (the benchmarks, the chaos suite) are not here: they live in
``bench/`` and ``chaos/`` at the top of the repository and are not shipped.
"""
