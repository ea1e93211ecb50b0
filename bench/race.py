"""The race: each system's 3-node cluster in turn, the same workloads through the same harness, one table.

Systems run one after another, never at once (two cores). Each cluster lives in its own temporary directory
and is stopped (by PID) before the next one starts, also when a workload fails.
"""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import uvloop

from bench.drivers import TAKE, Driver, NatsDriver, RabbitDriver, RaftQueueDriver
from bench.harness import Measurement, Op, drain, measurement, timed
from bench.nats_cluster import NatsCluster
from bench.rabbitmq_cluster import RabbitCluster
from bench.raft_queue_cluster import RaftQueueCluster

OURS = "raft-queue"
BATCH = 64
BATCH_IN_FLIGHT = 4
CONSUMERS = 4
OUR_DURABILITY = "fdatasync of the Raft log on a majority before the 2xx"


@dataclass(frozen=True)
class RaceConfig:
    seconds: float = 5.0
    warmup: float = 1.0
    in_flight: tuple[int, ...] = (1, 64, 256)
    backlog: int = 20_000
    body_bytes: int = 256


class Cluster(Protocol):
    @property
    def urls(self) -> list[str]: ...

    def stop(self) -> None: ...


@dataclass(frozen=True)
class System:
    key: str
    label: str
    durability: str
    start: Callable[[Path], Cluster]
    driver: Callable[[list[str], bytes], Driver]


def _started(make: Callable[[Path], RabbitCluster | NatsCluster]) -> Callable[[Path], Cluster]:
    def start(workdir: Path) -> Cluster:
        cluster = make(workdir)
        try:
            cluster.start()
        except BaseException:
            cluster.stop()
            raise
        return cluster

    return start


SYSTEMS = {
    OURS: System(OURS, "raft-queue (this repo)", OUR_DURABILITY, RaftQueueCluster, RaftQueueDriver),
    "rabbitmq": System("rabbitmq", RabbitCluster.name, RabbitCluster.durability, _started(RabbitCluster), RabbitDriver),
    "nats": System("nats", NatsCluster.name, NatsCluster.durability, _started(NatsCluster), NatsDriver),
}


def _publisher(driver: Driver, queue: str) -> Op:
    return lambda: driver.publish(queue)


async def _workloads(system: System, driver: Driver, cfg: RaceConfig) -> list[Measurement]:
    out: list[Measurement] = []
    for n in cfg.in_flight:
        queue = f"publish{n}"
        await driver.setup(queue)
        msgs, dt, lat = await timed(_publisher(driver, queue), in_flight=n, seconds=cfg.seconds, warmup=cfg.warmup)
        out.append(measurement(system.key, "publish", n, messages=msgs, seconds=dt, lat=lat))
    await driver.setup("batch")
    msgs, dt, lat = await timed(
        lambda: driver.publish_batch("batch", BATCH), in_flight=BATCH_IN_FLIGHT, seconds=cfg.seconds, warmup=cfg.warmup
    )
    out.append(
        measurement(system.key, f"batch publish ({BATCH}/request)", BATCH_IN_FLIGHT, messages=msgs, seconds=dt, lat=lat)
    )
    if cfg.backlog > 0:
        await driver.setup("drain")
        loaded = 0

        async def load() -> int:
            nonlocal loaded
            if loaded >= cfg.backlog:
                return 0
            loaded += BATCH
            return await driver.publish_batch("drain", BATCH)

        while loaded < cfg.backlog:
            await asyncio.gather(*(load() for _ in range(BATCH_IN_FLIGHT)))
        consumers = [await driver.consumer("drain") for _ in range(CONSUMERS)]
        try:
            msgs, dt, lat = await drain([c.take for c in consumers], total=loaded, timeout=300)
        finally:
            for c in consumers:
                await c.close()
        out.append(
            measurement(system.key, f"consume + ack ({TAKE}/take)", CONSUMERS, messages=msgs, seconds=dt, lat=lat)
        )
    return out


async def _run_system(system: System, cfg: RaceConfig, urls: list[str]) -> list[Measurement]:
    driver = system.driver(urls, b"x" * cfg.body_bytes)
    try:
        return await _workloads(system, driver, cfg)
    finally:
        await driver.close()


@contextmanager
def _cluster(system: System) -> Iterator[Cluster]:
    with tempfile.TemporaryDirectory(prefix=f"race-{system.key}-") as tmp:
        cluster = system.start(Path(tmp))
        try:
            yield cluster
        finally:
            cluster.stop()


def run_race(systems: list[str], cfg: RaceConfig, log: Callable[[str], None]) -> list[Measurement]:
    results: list[Measurement] = []
    for key in systems:
        system = SYSTEMS[key]
        log(f"starting a 3-node {system.label} cluster on 127.0.0.1")
        with _cluster(system) as cluster, asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            got = runner.run(_run_system(system, cfg, cluster.urls))
        results.extend(got)
        log(f"{system.label}: done, cluster stopped")
    return results
