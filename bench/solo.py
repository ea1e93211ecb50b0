"""``python -m bench solo``: raft-queue alone, throughput and latency of a real cluster, as a table (and JSON).

By default it starts its own 3-node cluster of child processes on free 127.0.0.1 ports with data in a
temporary directory (fsync on, as always), runs the workloads against the leader over HTTP, and stops the
nodes it started by PID. ``--urls`` targets a running cluster instead.

Workloads: ``publish`` (one message per request, N in flight), ``batch`` (64 messages per request),
``consume`` (receive up to 100 + ack them, from a backlog), ``end-to-end`` (a paced producer and long-polling
consumers: the time from the start of an enqueue to the receive that delivered it), ``transactions`` (16 in
flight: receive one message, then ack it and publish its successor in one transaction). A publish counts only
when its 2xx arrived, i.e. after the entry was fsynced on a majority and applied. The client runs on uvloop, as
the nodes do, so that the client's own cost (it shares the machine) stays small. The closed loops are the
race's harness (``bench/harness.py``) and every figure is a ``Measurement``, as in the race.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import tempfile
import time
import uuid
from dataclasses import asdict
from pathlib import Path

import aiohttp
import uvloop

from bench.harness import Measurement, Op, closed_loop, measurement, timed
from bench.raft_queue_cluster import ClusterNotReady, RaftQueueCluster, leader_url
from bench.table import OURS

BATCH = 64
#: Publishes per second of the end-to-end workload's producer: a steady, unsaturated rate, so the figure is the
#: latency a message sees in a healthy system, not the queueing delay of an overloaded one.
E2E_RATE = 200
E2E_CONSUMERS = 2
#: Concurrency of the transaction workload (the figure the transactions issue asks for).
TXN_IN_FLIGHT = 16


def _result(name: str, in_flight: int, messages: int, seconds: float, lat: list[float]) -> Measurement:
    return measurement(OURS, name, in_flight, messages=messages, seconds=seconds, lat=lat)


def _poster(session: aiohttp.ClientSession, url: str, payload: bytes, *, per_request: int) -> Op:
    """One publish request of ``per_request`` messages, for the harness's closed loop; a non-2xx fails the run."""
    headers = {"Content-Type": "application/json"}

    async def post() -> int:
        async with session.post(url, data=payload, headers=headers) as r:
            await r.read()
            if r.status not in (200, 201):
                raise RuntimeError(f"publish answered {r.status}")
        return per_request

    return post


async def publish(session: aiohttp.ClientSession, base: str, in_flight: int, seconds: float, size: int) -> Measurement:
    queue = f"bench-publish-{in_flight}"
    await _put_queue(session, base, queue)
    payload = json.dumps({"body": "x" * size}).encode()
    op = _poster(session, f"{base}/v1/queues/{queue}/messages", payload, per_request=1)
    n, dt, lat = await timed(op, in_flight=in_flight, seconds=seconds, warmup=min(1.0, seconds))
    return _result("publish", in_flight, n, dt, lat)


async def batch_publish(
    session: aiohttp.ClientSession, base: str, in_flight: int, seconds: float, size: int
) -> Measurement:
    queue = f"bench-batch-{in_flight}"
    await _put_queue(session, base, queue)
    payload = json.dumps({"messages": [{"body": "x" * size}] * BATCH}).encode()
    op = _poster(session, f"{base}/v1/queues/{queue}/messages", payload, per_request=BATCH)
    n, dt, lat = await closed_loop(op, in_flight=in_flight, seconds=seconds)
    return _result(f"batch publish ({BATCH}/request)", in_flight, n, dt, lat)


async def consume(session: aiohttp.ClientSession, base: str, in_flight: int, backlog: int, size: int) -> Measurement:
    queue = "bench-consume"
    await _put_queue(session, base, queue)
    payload = json.dumps({"messages": [{"body": "x" * size}] * BATCH}).encode()
    for _ in range(backlog // BATCH):
        async with session.post(f"{base}/v1/queues/{queue}/messages", data=payload) as r:
            await r.read()
    lat: list[float] = []
    done = 0
    empty = asyncio.Event()

    async def worker() -> None:
        nonlocal done
        while not empty.is_set():
            t0 = time.perf_counter()
            async with session.post(f"{base}/v1/queues/{queue}/receive", json={"max_messages": 100}) as r:
                msgs = (await r.json())["messages"]
            if not msgs:
                empty.set()
                return
            async with session.post(
                f"{base}/v1/queues/{queue}/ack", json={"receipts": [m["receipt"] for m in msgs]}
            ) as r:
                await r.read()
            lat.append(time.perf_counter() - t0)
            done += len(msgs)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(in_flight)))
    return _result("consume + ack (100/receive)", in_flight, done, time.perf_counter() - started, lat)


async def end_to_end(session: aiohttp.ClientSession, base: str, seconds: float, size: int) -> Measurement:
    """A producer paced at E2E_RATE/s; E2E_CONSUMERS long-poll (wait_s 1) and ack. Latency: from the start of
    the enqueue request to the return of the receive that delivered the message (one clock, this process)."""
    queue = "bench-e2e"
    await _put_queue(session, base, queue)
    sent: dict[str, float] = {}
    lat: list[float] = []
    producing = True
    pad = "x" * max(0, size - 40)

    async def producer() -> None:
        nonlocal producing
        loop = asyncio.get_running_loop()
        start, n = loop.time(), 0
        while loop.time() - start < seconds:
            tag = uuid.uuid4().hex
            sent[tag] = time.perf_counter()
            async with session.post(f"{base}/v1/queues/{queue}/messages", json={"body": tag + pad}) as r:
                await r.read()
                if r.status != 201:
                    raise RuntimeError(f"publish answered {r.status}")
            n += 1
            await asyncio.sleep(max(0.0, start + n / E2E_RATE - loop.time()))
        producing = False

    async def consumer() -> None:
        while producing or len(lat) < len(sent):
            async with session.post(f"{base}/v1/queues/{queue}/receive", json={"max_messages": 10, "wait_s": 1}) as r:
                msgs = (await r.json())["messages"]
            now = time.perf_counter()
            if not msgs:
                if not producing:
                    return
                continue
            lat.extend(now - sent[m["body"][:32]] for m in msgs)
            async with session.post(
                f"{base}/v1/queues/{queue}/ack", json={"receipts": [m["receipt"] for m in msgs]}
            ) as r:
                await r.read()

    started = time.perf_counter()
    await asyncio.gather(producer(), *(consumer() for _ in range(E2E_CONSUMERS)))
    return _result(f"end-to-end ({E2E_RATE}/s paced)", 1, len(lat), time.perf_counter() - started, lat)


async def transactions(
    session: aiohttp.ClientSession, base: str, in_flight: int, seconds: float, *, size: int, backlog: int
) -> Measurement:
    """Consume-transform-produce: receive one message, then ack it and publish its successor in one transaction
    (its own transaction ID). Counts committed transactions; latency is the transaction request's."""
    src, dst = "bench-txn-src", "bench-txn-dst"
    await _put_queue(session, base, src)
    await _put_queue(session, base, dst)
    payload = json.dumps({"messages": [{"body": "x" * size}] * BATCH}).encode()
    for _ in range(max(1, backlog // BATCH)):
        async with session.post(f"{base}/v1/queues/{src}/messages", data=payload) as r:
            await r.read()
    lat: list[float] = []
    done = 0
    stop_at = time.monotonic() + seconds

    async def worker() -> None:
        nonlocal done
        while time.monotonic() < stop_at:
            async with session.post(f"{base}/v1/queues/{src}/receive", json={"max_messages": 1}) as r:
                msgs = (await r.json())["messages"]
            if not msgs:
                return
            body = {
                "transaction_id": uuid.uuid4().hex,
                "operations": [
                    {"op": "ack", "queue": src, "receipts": [msgs[0]["receipt"]]},
                    {"op": "enqueue", "queue": dst, "messages": [{"body": msgs[0]["body"]}]},
                ],
            }
            t0 = time.perf_counter()
            async with session.post(f"{base}/v1/transactions", json=body) as r:
                await r.read()
                if r.status != 200:
                    raise RuntimeError(f"transaction answered {r.status}")
            lat.append(time.perf_counter() - t0)
            done += 1

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(in_flight)))
    return _result("transactions (ack + publish)", in_flight, done, time.perf_counter() - started, lat)


async def _put_queue(session: aiohttp.ClientSession, base: str, queue: str) -> None:
    async with session.put(f"{base}/v1/queues/{queue}", json={}) as r:
        await r.read()
        if r.status not in (200, 201):
            raise RuntimeError(f"creating {queue} answered {r.status}")


async def run_workloads(
    urls: list[str], seconds: float, size: int, in_flight: list[int], backlog: int
) -> list[Measurement]:
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=60)) as session:
        base = await leader_url(session, urls)
        results = [await publish(session, base, n, seconds, size) for n in in_flight]
        results.append(await batch_publish(session, base, 4, seconds, size))
        results.append(await end_to_end(session, base, seconds, size))
        if backlog:
            results.append(await consume(session, base, 4, backlog, size))
            results.append(await transactions(session, base, TXN_IN_FLIGHT, seconds, size=size, backlog=backlog))
        return results


def format_table(results: list[Measurement]) -> str:
    head = f"{'workload':<30} {'in flight':>9} {'messages':>9} {'msgs/s':>10} {'p50 ms':>8} {'p99 ms':>8}"
    rows = [
        f"{r.workload:<30} {r.in_flight:>9} {r.messages:>9} {r.msgs_per_s:>10.1f} {r.p50_ms:>8.2f} {r.p99_ms:>8.2f}"
        for r in results
    ]
    return "\n".join([head, *rows])


def run_solo(
    urls: list[str] | None, *, seconds: float, size: int, in_flight: list[int], backlog: int, json_path: Path | None
) -> int:
    """Runs every workload against ``urls``, or against a 3-node cluster started (and stopped) here; 0 or 1."""
    cluster: RaftQueueCluster | None = None
    tmp: tempfile.TemporaryDirectory[str] | None = None
    try:
        if urls is None:
            tmp = tempfile.TemporaryDirectory(prefix="raft-queue-bench-")
            try:
                cluster = RaftQueueCluster(Path(tmp.name))
            except ClusterNotReady:
                print("bench: the cluster did not become ready", file=sys.stderr)
                return 1
            urls = cluster.urls
            print(f"started a 3-node cluster for the benchmark: {', '.join(urls)} (fsync on)")
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            results = runner.run(run_workloads(urls, seconds, size, in_flight, backlog))
    finally:
        if cluster is not None:
            cluster.stop()
        if tmp is not None:
            tmp.cleanup()
    print(f"{size}-byte messages, {seconds:g} s per workload, {os.cpu_count()} CPUs, every 2xx fsynced on a majority")
    print(format_table(results))
    if json_path is not None:
        # the rows as they always were: every one is raft-queue's, so without the race's "system"
        rows = [{k: v for k, v in asdict(r).items() if k != "system"} for r in results]
        json_path.write_text(json.dumps(rows, indent=2) + "\n")
    return 0
