"""The peer race: raft-queue against RabbitMQ quorum queues and NATS JetStream, same harness, one table."""
