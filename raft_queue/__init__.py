"""raft-queue: a Raft-replicated, durable, linearizable message queue (the node, its Raft adapter and client)."""
