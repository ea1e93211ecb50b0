"""Every node loses power at the same moment: no acknowledged message may be lost.

Each node's data directory is on its own loop-mounted ext4 image. After acknowledged writes (and while more are
in flight) every filesystem is shut down without flushing its log (what a power cut leaves on disk), every node
is killed, the images are remounted and the cluster restarted. The same scenario with the journal's fsync
switched off must lose acknowledged writes: that proves the test can see a loss.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from chaos.disk import LoopDisk, unavailable_reason
from tests.cluster.harness import Cluster, http_json
from tests.cluster.test_cluster import drain, enqueue_with_retry

pytestmark = [pytest.mark.cluster, pytest.mark.powerloss]

_skip = unavailable_reason()


@pytest.fixture
def disks(tmp_path: Path) -> Iterator[list[LoopDisk]]:
    if _skip:
        pytest.skip(_skip)
    made: list[LoopDisk] = []
    try:
        for i in range(3):
            d = LoopDisk(tmp_path / f"disk{i + 1}.img", tmp_path / f"mnt{i + 1}")
            d.create()
            made.append(d)
        yield made
    finally:
        for d in made:
            d.destroy()


def _power_cut_run(tmp_path: Path, disks: list[LoopDisk], extra_args: list[str]) -> tuple[int, int, set[str]]:
    """Returns (acknowledged, lost, ids found after the restart)."""
    cluster = Cluster(tmp_path / "logs", 3, extra_args, data_dirs=[d.mountpoint / "data" for d in disks])
    (tmp_path / "logs").mkdir(exist_ok=True)
    try:
        cluster.start_all()
        cluster.wait_ready()
        assert http_json(cluster.urls[0] + "/v1/queues/ledger", "PUT", {})[0] == 201
        acknowledged = _write_then_cut_power(cluster, disks)
        assert len(acknowledged) >= 400, f"only {len(acknowledged)} writes were acknowledged before the cut"
        found = _restart_and_read(cluster, disks)
        if found is None:
            return len(acknowledged), len(acknowledged), set()
        return len(acknowledged), len(acknowledged - found), found
    except BaseException:
        import sys

        sys.stderr.write(cluster.logs())
        raise
    finally:
        cluster.close()


def _write_then_cut_power(cluster: Cluster, disks: list[LoopDisk]) -> set[str]:
    """8 writers on every node; once 400 writes are acknowledged (or 30 s), power is cut on every node at once,
    while writes are in flight. Returns the ids of the messages acknowledged before the cut."""
    acked: list[dict[str, Any]] = []
    lock = threading.Lock()
    stop = threading.Event()

    def produce(worker: int) -> None:
        n = 0
        while not stop.is_set():
            code, resp = http_json(
                cluster.urls[n % 3] + "/v1/queues/ledger/messages",
                "POST",
                {"body": f"w{worker}-{n}", "idempotency_key": f"w{worker}-{n}"},
            )
            if code in (200, 201):
                with lock:
                    acked.append(resp)
            n += 1

    try:
        with ThreadPoolExecutor(8) as pool:
            workers = [pool.submit(produce, w) for w in range(8)]
            deadline = time.monotonic() + 30
            while len(acked) < 400 and time.monotonic() < deadline:
                time.sleep(0.02)
            fds = [d.open_for_shutdown() for d in disks]
            with lock:
                acknowledged = {a["message_id"] for a in acked}
            for fd in fds:
                LoopDisk.cut_power(fd)
            for i in range(3):
                cluster.kill(i)
            stop.set()
            for w in workers:
                with contextlib.suppress(OSError):
                    w.result(timeout=30)
    finally:
        stop.set()
    return acknowledged


def _restart_and_read(cluster: Cluster, disks: list[LoopDisk]) -> set[str] | None:
    """Remounts the disks and restarts the nodes; the ids of the messages in the queue, or None if the cluster or
    the queue did not come back (every acknowledged message lost)."""
    for d in disks:
        d.unmount()
        d.mount()
    cluster.start_all()
    try:
        cluster.wait_ready(timeout=30)
    except AssertionError:
        return None
    code, _ = http_json(cluster.urls[0] + "/v1/queues/ledger")
    if code == 404:
        return None
    # The queue is back: every acknowledged message must be in it exactly once.
    enqueue_with_retry(cluster.urls, "ledger", "marker", "marker")
    got = drain(cluster.urls[0], "ledger")
    ids = [m["message_id"] for m in got]
    assert len(ids) == len(set(ids)), "a message came back twice"
    return set(ids)


def test_power_loss_of_every_node_loses_no_acknowledged_message(tmp_path: Path, disks: list[LoopDisk]) -> None:
    acknowledged, lost, _ = _power_cut_run(tmp_path, disks, [])
    print(f"power cut: {acknowledged} acknowledged before the cut, {lost} lost")
    assert lost == 0, f"{lost} of {acknowledged} acknowledged messages were lost"


def test_without_fsync_the_same_cut_loses_acknowledged_messages(tmp_path: Path, disks: list[LoopDisk]) -> None:
    """The control experiment: proves the power cut is real and the test above can fail."""
    acknowledged, lost, _ = _power_cut_run(tmp_path, disks, ["--fsync", "off"])
    print(f"power cut without fsync: {acknowledged} acknowledged before the cut, {lost} lost")
    assert lost > 0, "with fsync switched off the power cut lost nothing: the cut is not a real power loss"
