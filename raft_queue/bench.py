"""``raft-queue bench``: throughput and latency of a real cluster, printed as a table (and optionally JSON).

By default it starts its own 3-node cluster of child processes on free 127.0.0.1 ports with data in a
temporary directory (fsync on, as always), runs the workloads against the leader over HTTP, and stops the
nodes it started by PID. ``--urls`` targets a running cluster instead.

Workloads: ``publish`` (one message per request, N in flight), ``batch`` (64 messages per request),
``consume`` (receive up to 100 + ack them, from a backlog), ``end-to-end`` (a paced producer and long-polling
consumers: the time from the start of an enqueue to the receive that delivered it), ``transactions`` (16 in
flight: receive one message, then ack it and publish its successor in one transaction). A publish counts only
when its 2xx arrived, i.e. after the entry was fsynced on a majority and applied. The client runs on uvloop, as
the nodes do, so that the client's own cost (it shares the machine) stays small.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import socket
import statistics
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import aiohttp
import uvloop

from raft_queue.tools.dev_cluster import DevCluster, DevClusterSpec, load_or_create_secret, ready_url

BATCH = 64
#: Publishes per second of the end-to-end workload's producer: a steady, unsaturated rate, so the figure is the
#: latency a message sees in a healthy system, not the queueing delay of an overloaded one.
E2E_RATE = 200
E2E_CONSUMERS = 2
#: Concurrency of the transaction workload (the figure the transactions issue asks for).
TXN_IN_FLIGHT = 16


@dataclass(frozen=True)
class BenchResult:
    workload: str
    in_flight: int
    messages: int
    seconds: float
    msgs_per_s: float
    p50_ms: float
    p99_ms: float


def percentile(values: list[float], q: float) -> float:
    """The nearest-rank ``q`` quantile (0 < q <= 1) of ``values``; 0.0 when empty."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered), max(1, math.ceil(q * len(ordered)))) - 1]


def _result(name: str, in_flight: int, messages: int, seconds: float, lat: list[float]) -> BenchResult:
    return BenchResult(
        workload=name,
        in_flight=in_flight,
        messages=messages,
        seconds=round(seconds, 3),
        msgs_per_s=round(messages / seconds, 1) if seconds else 0.0,
        p50_ms=round(statistics.median(lat) * 1000, 2) if lat else 0.0,
        p99_ms=round(percentile(lat, 0.99) * 1000, 2),
    )


async def _leader(session: aiohttp.ClientSession, urls: list[str]) -> str:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        for url in urls:
            try:
                async with session.get(f"{url}/v1/cluster") as r:
                    st = await r.json()
                    if st.get("leader_url"):
                        return str(st["leader_url"])
            except aiohttp.ClientError:
                continue
        await asyncio.sleep(0.1)
    raise RuntimeError("no leader within 30 s")


async def _closed_loop(
    session: aiohttp.ClientSession, url: str, payload: bytes, *, in_flight: int, seconds: float, per_request: int
) -> tuple[int, float, list[float]]:
    lat: list[float] = []
    count = 0
    stop_at = time.monotonic() + seconds
    headers = {"Content-Type": "application/json"}

    async def worker() -> None:
        nonlocal count
        while time.monotonic() < stop_at:
            t0 = time.perf_counter()
            async with session.post(url, data=payload, headers=headers) as r:
                await r.read()
                if r.status not in (200, 201):
                    raise RuntimeError(f"publish answered {r.status}")
            lat.append(time.perf_counter() - t0)
            count += per_request

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(in_flight)))
    return count, time.perf_counter() - started, lat


async def publish(session: aiohttp.ClientSession, base: str, in_flight: int, seconds: float, size: int) -> BenchResult:
    queue = f"bench-publish-{in_flight}"
    await _put_queue(session, base, queue)
    payload = json.dumps({"body": "x" * size}).encode()
    url = f"{base}/v1/queues/{queue}/messages"
    await _closed_loop(session, url, payload, in_flight=in_flight, seconds=min(1.0, seconds), per_request=1)
    n, dt, lat = await _closed_loop(session, url, payload, in_flight=in_flight, seconds=seconds, per_request=1)
    return _result("publish", in_flight, n, dt, lat)


async def batch_publish(
    session: aiohttp.ClientSession, base: str, in_flight: int, seconds: float, size: int
) -> BenchResult:
    queue = f"bench-batch-{in_flight}"
    await _put_queue(session, base, queue)
    payload = json.dumps({"messages": [{"body": "x" * size}] * BATCH}).encode()
    url = f"{base}/v1/queues/{queue}/messages"
    n, dt, lat = await _closed_loop(session, url, payload, in_flight=in_flight, seconds=seconds, per_request=BATCH)
    return _result(f"batch publish ({BATCH}/request)", in_flight, n, dt, lat)


async def consume(session: aiohttp.ClientSession, base: str, in_flight: int, backlog: int, size: int) -> BenchResult:
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


async def end_to_end(session: aiohttp.ClientSession, base: str, seconds: float, size: int) -> BenchResult:
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
) -> BenchResult:
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
) -> list[BenchResult]:
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=60)) as session:
        base = await _leader(session, urls)
        results = [await publish(session, base, n, seconds, size) for n in in_flight]
        results.append(await batch_publish(session, base, 4, seconds, size))
        results.append(await end_to_end(session, base, seconds, size))
        if backlog:
            results.append(await consume(session, base, 4, backlog, size))
            results.append(await transactions(session, base, TXN_IN_FLIGHT, seconds, size=size, backlog=backlog))
        return results


def free_port_base(n: int) -> int:
    """A base port with n free consecutive ports (checked, not reserved)."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            base = int(s.getsockname()[1])
        if base + n < 65000 and all(_port_free(base + i) for i in range(n)):
            return base
    raise RuntimeError("no free port range found")


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def format_table(results: list[BenchResult]) -> str:
    head = f"{'workload':<30} {'in flight':>9} {'messages':>9} {'msgs/s':>10} {'p50 ms':>8} {'p99 ms':>8}"
    rows = [
        f"{r.workload:<30} {r.in_flight:>9} {r.messages:>9} {r.msgs_per_s:>10.1f} {r.p50_ms:>8.2f} {r.p99_ms:>8.2f}"
        for r in results
    ]
    return "\n".join([head, *rows])


def run_bench(
    urls: list[str] | None, *, seconds: float, size: int, in_flight: list[int], backlog: int, json_path: Path | None
) -> int:
    cluster: DevCluster | None = None
    tmp: tempfile.TemporaryDirectory[str] | None = None
    try:
        if urls is None:
            tmp = tempfile.TemporaryDirectory(prefix="raft-queue-bench-")
            base = free_port_base(6)
            spec = DevClusterSpec(Path(tmp.name), 3, "127.0.0.1", base, base + 3, "warning", 60.0)
            cluster = DevCluster(spec, sys.stdout, sys.stderr)
            cluster.start(load_or_create_secret(spec.data_dir))
            urls = [spec.http_url(i) for i in spec.indices]
            deadline = time.monotonic() + 60
            while ready_url(urls) is None:
                if cluster.first_dead() is not None or time.monotonic() > deadline:
                    print("bench: the cluster did not become ready", file=sys.stderr)
                    return 1
                threading.Event().wait(0.2)
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
        json_path.write_text(json.dumps([asdict(r) for r in results], indent=2) + "\n")
    return 0


def results_from_json(text: str) -> list[dict[str, Any]]:
    data: list[dict[str, Any]] = json.loads(text)
    return data
