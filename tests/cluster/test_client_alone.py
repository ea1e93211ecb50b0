"""The client distribution alone: its wheel in an empty venv adds only ``raft_queue_client``, and works.

The wheel of ./client is built and installed into a fresh venv (no system site packages; aiohttp and msgspec
come from the package index or pip's cache). The venv must then hold exactly the client, its dependencies and
the venv's own pip tooling: no server package, no server dependency. A script run by that venv's python, which
cannot import the server, then creates a queue, publishes, receives, acks and commits a one-shot transaction
against a real 3-node cluster (run by the repository's environment, started and stopped by PID).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.cluster.harness import running_cluster

pytestmark = pytest.mark.cluster

CLIENT_DIR = Path(__file__).resolve().parents[2] / "client"

#: Top-level names that must never arrive with the client: the server's packages, the repository's tools and
#: the server's own dependencies.
SERVER_NAMES = {
    "raft_queue", "api", "state_machine", "bench", "chaos", "pysyncobj", "rocksdict", "uvloop", "cryptography",
}  # fmt: skip

#: Run by the venv's python: every installed distribution with its top-level names, and the dependency closure
#: of the distribution named by the argument, if any (requirements without extras, markers evaluated there).
INVENTORY = textwrap.dedent(
    """
    import json
    import sys
    from importlib import metadata
    from pip._vendor.packaging.requirements import Requirement
    from pip._vendor.packaging.utils import canonicalize_name

    def top_level(dist):
        names = set()
        for f in dist.files or ():
            first = f.parts[0]
            if first in ("..", "__pycache__") or first.endswith((".dist-info", ".egg-info", ".pth")):
                continue
            names.add(first.split(".")[0] if len(f.parts) == 1 else first)
        return sorted(names)

    dists = {canonicalize_name(d.metadata["Name"]): top_level(d) for d in metadata.distributions()}
    closure, todo = set(), sys.argv[1:]
    while todo:
        name = canonicalize_name(todo.pop())
        if name in closure:
            continue
        closure.add(name)
        for spec in metadata.distribution(name).requires or ():
            req = Requirement(spec)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(req.name)
    print(json.dumps({"dists": dists, "closure": sorted(closure)}))
    """
)

#: Run by the venv's python against the cluster: the client's everyday operations.
SCRIPT = textwrap.dedent(
    """
    import importlib.util
    import sys

    from raft_queue_client import AckOp, Client, EnqueueOp, SettleOutcome

    assert importlib.util.find_spec("raft_queue") is None, "the server package is importable"
    assert importlib.util.find_spec("api") is None and importlib.util.find_spec("state_machine") is None

    with Client(sys.argv[1].split(","), timeout_s=5.0, max_attempts=40, backoff_max_s=0.5) as q:
        assert q.create_queue("orders").created
        q.create_queue("settlements")
        sent = q.enqueue("orders", '{"order": 1}', idempotency_key="order-1")
        [m] = q.receive("orders", wait_s=5)
        assert m.message_id == sent.message_id and m.body == '{"order": 1}'
        assert [r.outcome for r in q.ack("orders", m)] == [SettleOutcome.ACKED]
        q.enqueue("orders", '{"order": 2}', idempotency_key="order-2")
        [m2] = q.receive("orders", wait_s=5)
        done = q.transact(f"settle-{m2.message_id}", [AckOp("orders", m2), EnqueueOp("settlements", ["settle 2"])])
        assert not done.duplicate and len(done.results) == 2
        [settlement] = q.receive("settlements", wait_s=5)
        assert settlement.body == "settle 2"
        counts = q.get_queue("orders").counts
        assert (counts.enqueued_total, counts.acked_total, counts.ready) == (2, 2, 0)
    print("client-alone: ok")
    """
)


def run(command: list[str], *, timeout: float, cwd: Path) -> str:
    """Runs ``command`` to completion and returns its stdout. It runs in a session of its own, so that after
    ``timeout`` s, or if the test is interrupted, it is killed with everything it started (pip's build backend)."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    proc = subprocess.Popen(
        command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:  # not reaped yet, so its process group is still ours
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 0, f"{command} failed ({proc.returncode}):\n{out}\n{err}"
    return out


@pytest.mark.timeout(900)
def test_the_client_wheel_in_an_empty_venv_adds_only_its_package_and_talks_to_a_cluster(tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(wheels), str(CLIENT_DIR)],
        timeout=300, cwd=tmp_path)  # fmt: skip
    [wheel] = wheels.glob("raft_queue_client-0.1.0-*.whl")

    venv = tmp_path / "venv"
    run([sys.executable, "-m", "venv", str(venv)], timeout=120, cwd=tmp_path)
    python = str(venv / "bin" / "python")
    tooling = set(json.loads(run([python, "-c", INVENTORY], timeout=60, cwd=tmp_path))["dists"])
    run([python, "-m", "pip", "install", "-q", "--disable-pip-version-check", str(wheel)], timeout=600, cwd=tmp_path)

    inventory = json.loads(run([python, "-c", INVENTORY, "raft-queue-client"], timeout=60, cwd=tmp_path))
    dists: dict[str, list[str]] = inventory["dists"]
    closure = set(inventory["closure"])
    assert {"raft-queue-client", "aiohttp", "msgspec"} <= closure
    assert set(dists) == closure | tooling, "distributions other than the client's, its dependencies and pip's"
    assert dists["raft-queue-client"] == ["raft_queue_client"]
    names = {name for dist in closure for name in dists[dist]}
    assert not names & SERVER_NAMES, f"server names installed with the client: {names & SERVER_NAMES}"
    assert {"raft_queue_client", "aiohttp", "msgspec"} <= names

    script = tmp_path / "use_the_client.py"
    script.write_text(SCRIPT)
    with running_cluster(tmp_path / "cluster") as cluster:
        out = run([python, str(script), ",".join(cluster.urls)], timeout=180, cwd=tmp_path)
    assert out.strip().endswith("client-alone: ok")
