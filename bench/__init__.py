"""The benchmarks, a repository tool (not shipped): the peer race against RabbitMQ quorum queues and NATS
JetStream, raft-queue alone, and a node's memory with a backlog; one harness, one result type. See DESIGN.md."""
