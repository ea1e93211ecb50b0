"""One driver per system: the same four calls, each written the way that system's own client does it.

- ``publish`` one message and wait for its confirmation (our 2xx, RabbitMQ's publisher confirm, JetStream's
  PubAck);
- ``publish_batch`` 64 messages and wait for all of them (one request for us; 64 pipelined publishes for the
  peers, whose protocols have no batch publish);
- ``take``: consume up to 100 ready messages and acknowledge them (one receive + one ack request for us; a
  prefetching consumer with one ``multiple`` ack for RabbitMQ; a pull consumer's ``fetch`` and per-message
  acks for JetStream), returning how many it got.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any, Protocol

import aio_pika
import aiohttp
import nats
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage, AbstractRobustConnection
from nats.js.api import RetentionPolicy, StorageType, StreamConfig

from bench.raft_queue_cluster import leader_url

TAKE = 100


class Driver(Protocol):
    async def setup(self, queue: str) -> None: ...

    async def publish(self, queue: str) -> int: ...

    async def publish_batch(self, queue: str, n: int) -> int: ...

    async def consumer(self, queue: str) -> Consumer: ...

    async def close(self) -> None: ...


class Consumer(Protocol):
    async def take(self) -> int: ...

    async def close(self) -> None: ...


class RaftQueueDriver:
    def __init__(self, urls: list[str], body: bytes) -> None:
        self._urls = urls
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0), timeout=aiohttp.ClientTimeout(total=60)
        )
        self._one = json.dumps({"body": body.decode()}).encode()
        self._body = body.decode()
        self._batches: dict[int, bytes] = {}
        self._base = ""
        self._headers = {"Content-Type": "application/json"}

    async def setup(self, queue: str) -> None:
        self._base = self._base or await leader_url(self._session, self._urls)
        async with self._session.put(f"{self._base}/v1/queues/{queue}", json={}) as r:
            if r.status not in (200, 201):
                raise RuntimeError(f"creating {queue}: {r.status} {await r.text()}")

    async def _post(self, path: str, data: bytes) -> Any:
        async with self._session.post(f"{self._base}{path}", data=data, headers=self._headers) as r:
            if r.status not in (200, 201):
                raise RuntimeError(f"POST {path}: {r.status} {await r.text()}")
            return await r.json()

    async def publish(self, queue: str) -> int:
        await self._post(f"/v1/queues/{queue}/messages", self._one)
        return 1

    async def publish_batch(self, queue: str, n: int) -> int:
        if n not in self._batches:
            self._batches[n] = json.dumps({"messages": [{"body": self._body}] * n}).encode()
        await self._post(f"/v1/queues/{queue}/messages", self._batches[n])
        return n

    async def consumer(self, queue: str) -> Consumer:
        return _RaftQueueConsumer(self, queue)

    async def close(self) -> None:
        await self._session.close()


class _RaftQueueConsumer:
    def __init__(self, driver: RaftQueueDriver, queue: str) -> None:
        self._d = driver
        self._q = queue
        self._receive = json.dumps({"max_messages": TAKE, "wait_s": 1}).encode()

    async def take(self) -> int:
        got = await self._d._post(f"/v1/queues/{self._q}/receive", self._receive)
        receipts = [m["receipt"] for m in got["messages"]]
        if receipts:
            await self._d._post(f"/v1/queues/{self._q}/ack", json.dumps({"receipts": receipts}).encode())
        return len(receipts)

    async def close(self) -> None:
        return None


class RabbitDriver:
    def __init__(self, urls: list[str], body: bytes) -> None:
        self._url = urls[0]  # the node that declares the queue, which holds its first Raft leader
        self._body = body
        self._conn: AbstractRobustConnection | None = None
        self._channel: AbstractChannel | None = None

    async def _ch(self) -> AbstractChannel:
        if self._channel is None:
            self._conn = await aio_pika.connect_robust(self._url)
            self._channel = await self._conn.channel(publisher_confirms=True)
        return self._channel

    async def setup(self, queue: str) -> None:
        ch = await self._ch()
        await ch.declare_queue(queue, durable=True, arguments={"x-queue-type": "quorum"})

    async def publish(self, queue: str) -> int:
        ch = await self._ch()
        message = aio_pika.Message(self._body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT)
        await ch.default_exchange.publish(message, routing_key=queue)
        return 1

    async def publish_batch(self, queue: str, n: int) -> int:
        await asyncio.gather(*(self.publish(queue) for _ in range(n)))
        return n

    async def consumer(self, queue: str) -> Consumer:
        assert self._conn is not None or await self._ch()
        assert self._conn is not None
        channel = await self._conn.channel()
        await channel.set_qos(prefetch_count=2 * TAKE)
        q = await channel.get_queue(queue, ensure=False)
        consumer = _RabbitConsumer(channel)
        await q.consume(consumer.on_message)
        return consumer

    async def close(self) -> None:
        if self._conn is not None:
            await self._conn.close()


class _RabbitConsumer:
    def __init__(self, channel: AbstractChannel) -> None:
        self._channel = channel
        self._inbox: asyncio.Queue[AbstractIncomingMessage] = asyncio.Queue()

    async def on_message(self, message: AbstractIncomingMessage) -> None:
        self._inbox.put_nowait(message)

    async def take(self) -> int:
        try:
            last = await asyncio.wait_for(self._inbox.get(), 1.0)
        except TimeoutError:
            return 0
        n = 1
        while n < TAKE and not self._inbox.empty():
            last = self._inbox.get_nowait()
            n += 1
        await last.ack(multiple=True)
        return n

    async def close(self) -> None:
        await self._channel.close()


class NatsDriver:
    def __init__(self, urls: list[str], body: bytes) -> None:
        self._urls = urls
        self._body = body
        self._nc: Any = None
        self._js: Any = None

    async def _jetstream(self) -> Any:
        if self._js is None:
            self._nc = await nats.connect(servers=self._urls[:1])
            self._js = self._nc.jetstream(timeout=30)
        return self._js

    async def setup(self, queue: str) -> None:
        js = await self._jetstream()
        config = StreamConfig(
            name=queue,
            subjects=[queue],
            retention=RetentionPolicy.WORK_QUEUE,
            storage=StorageType.FILE,
            num_replicas=3,
        )
        await js.add_stream(config)

    async def publish(self, queue: str) -> int:
        await self._js.publish(queue, self._body)
        return 1

    async def publish_batch(self, queue: str, n: int) -> int:
        await asyncio.gather(*(self._js.publish(queue, self._body) for _ in range(n)))
        return n

    async def consumer(self, queue: str) -> Consumer:
        js = await self._jetstream()
        sub = await js.pull_subscribe(queue, durable="bench", stream=queue)
        return _NatsConsumer(sub)

    async def close(self) -> None:
        if self._nc is not None:
            await self._nc.close()


class _NatsConsumer:
    def __init__(self, sub: Any) -> None:
        self._sub = sub

    async def take(self) -> int:
        try:
            msgs = await self._sub.fetch(TAKE, timeout=1)
        except (nats.errors.TimeoutError, TimeoutError):  # nats-py raises either, depending on where it waited
            return 0
        for m in msgs:
            await m.ack()
        return len(msgs)

    async def close(self) -> None:
        await self._sub.unsubscribe()
