"""The examples run as documented, against a real cluster."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.cluster.harness import Cluster, http_json, running_cluster
from tests.cluster.test_cluster import drain

pytestmark = pytest.mark.cluster

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "consume_transform_produce.py"


def test_consume_transform_produce_example_settles_each_order_once(tmp_path: Path) -> None:
    with running_cluster(tmp_path) as cluster:
        _run(cluster)


def _run(cluster: Cluster) -> None:
    urls = cluster.urls
    assert http_json(urls[0] + "/v1/queues/orders", "PUT", {})[0] == 201
    orders = [json.dumps({"order": k, "amount": 100 + k}) for k in range(25)]
    code, _ = http_json(urls[1] + "/v1/queues/orders/messages", "POST", {"messages": [{"body": b} for b in orders]})
    assert code == 201
    cmd = [sys.executable, str(EXAMPLE), "--urls", ",".join(urls), "--until-empty", "--quiet"]
    for _ in range(2):  # a second run finds nothing left to settle
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
        assert done.returncode == 0, done.stderr[-3000:]
    settlements = [json.loads(m["body"]) for m in drain(urls[2], "settlements")]
    assert sorted(s["order"]["order"] for s in settlements) == list(range(25))
    assert len({s["settles"] for s in settlements}) == 25
    code, info = http_json(urls[0] + "/v1/queues/orders")
    assert info["counts"]["acked_total"] == 25 and info["counts"]["ready"] + info["counts"]["leased"] == 0
