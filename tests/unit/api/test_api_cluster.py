"""Cluster status, health, the X-Raft-* headers and ``?redirect=true``."""

from __future__ import annotations

import pytest

from state_machine.contract import ClusterStatus
from tests.unit.api.fakes import FakeBackend, follower_status, queue_info
from tests.unit.api.harness import async_test, problem, serve


@async_test
async def test_healthz() -> None:
    async with serve(FakeBackend(status=follower_status(leader_id=None))) as client:
        response = await client.get("/healthz")
        assert response.status == 200
        assert await response.json() == {"status": "ok"}


@async_test
async def test_readyz_ready() -> None:
    fake = FakeBackend("n2", status=follower_status("n2", commit_index=9, applied_index=9))
    async with serve(fake) as client:
        response = await client.get("/readyz")
        assert response.status == 200
        assert await response.json() == {
            "status": "ready",
            "node_id": "n2",
            "leader_id": "n1",
            "applied_index": 9,
            "commit_index": 9,
        }


@pytest.mark.parametrize(
    "status",
    [follower_status(leader_id=None), follower_status(ready=False, applied_index=3)],
    ids=["no leader", "catching up"],
)
@async_test
async def test_readyz_not_ready(status: ClusterStatus) -> None:
    async with serve(FakeBackend("n2", status=status)) as client:
        response = await client.get("/readyz")
        assert (await problem(response, 503, "not_ready"))["retry"] == "safe"
        assert response.headers["Retry-After"] == "1"


@async_test
async def test_cluster_renders_status() -> None:
    async with serve(FakeBackend()) as client:
        response = await client.get("/v1/cluster")
        assert response.status == 200
        assert await response.json() == {
            "node_id": "n1",
            "role": "leader",
            "leader_id": "n1",
            "leader_url": "http://n1.example:8000",
            "term": 3,
            "commit_index": 42,
            "applied_index": 42,
            "has_quorum": True,
            "ready": True,
            "members": [
                {
                    "node_id": "n1",
                    "raft_address": "n1.example:7000",
                    "http_url": "http://n1.example:8000",
                    "connected": True,
                }
            ],
        }


@async_test
async def test_raft_headers_on_every_response() -> None:
    fake = FakeBackend("n2", status=follower_status("n2"))
    async with serve(fake) as client:
        for response in (
            await client.get("/healthz"),
            await client.get("/v1/queues/missing"),
            await client.get("/no/such/route"),
            await client.post("/v1/queues/orders/messages", data=b"{"),
            await client.get("/v1/queues/orders?redirect=true", allow_redirects=False),
        ):
            assert response.headers["X-Raft-Node"] == "n2"
            assert response.headers["X-Raft-Leader"] == "n1"
            assert response.headers["X-Raft-Leader-Url"] == "http://n1.example:8000"


@async_test
async def test_no_leader_headers_without_a_leader() -> None:
    fake = FakeBackend("n2", status=follower_status("n2", leader_id=None))
    async with serve(fake) as client:
        response = await client.get("/healthz")
        assert response.headers["X-Raft-Node"] == "n2"
        assert "X-Raft-Leader" not in response.headers
        assert "X-Raft-Leader-Url" not in response.headers


@async_test
async def test_headers_survive_a_failing_leader_lookup() -> None:
    fake = FakeBackend()

    def broken() -> tuple[str | None, str | None]:
        raise RuntimeError("status unavailable")

    fake.leader = broken  # type: ignore[method-assign]
    async with serve(fake) as client:
        response = await client.get("/healthz")
        assert response.status == 200
        assert response.headers["X-Raft-Node"] == "n1"


@pytest.mark.parametrize("flag", ["true", "1", "yes", "TRUE", "Yes"])
@async_test
async def test_follower_redirects_to_leader(flag: str) -> None:
    fake = FakeBackend("n2", status=follower_status("n2"))
    async with serve(fake) as client:
        for method, path in (
            ("POST", f"/v1/queues/orders/messages?redirect={flag}"),
            ("GET", f"/v1/queues?redirect={flag}"),
            ("PUT", f"/v1/queues/orders?redirect={flag}"),
        ):
            response = await client.request(method, path, data=b'{"body": "x"}', allow_redirects=False)
            assert response.status == 307
            assert response.headers["Location"] == "http://n1.example:8000" + path
        # A local read and the node's own cluster view are answered by the node asked, never redirected.
        for path in (
            f"/v1/queues?consistency=local&redirect={flag}",
            f"/v1/cluster?redirect={flag}",
            f"/v1/cluster/digest?redirect={flag}",  # a follower's own digest, which is what its caller asked for
        ):
            response = await client.get(path, allow_redirects=False)
            assert response.status == 200, path
    assert fake.ops == []
    assert fake.barrier_calls == 0


@async_test
async def test_follower_serves_without_redirect_flag() -> None:
    fake = FakeBackend("n2", status=follower_status("n2"))
    async with serve(fake) as client:
        for flag in ("", "?redirect=false", "?redirect=0", "?redirect=no", "?redirect=FALSE", "?redirect="):
            response = await client.post(f"/v1/queues/orders/messages{flag}", json={"body": "x"})
            assert response.status == 201
        assert (await client.get("/healthz?redirect=true")).status == 200
    assert len(fake.ops) == 6


@async_test
async def test_leader_serves_redirect_requests_itself() -> None:
    fake = FakeBackend()
    fake.queues["orders"] = queue_info("orders")
    async with serve(fake) as client:
        response = await client.get("/v1/queues/orders?redirect=true", allow_redirects=False)
        assert response.status == 200
        assert (await response.json())["name"] == "orders"


@pytest.mark.parametrize("role", ["follower", "candidate"])
@async_test
async def test_redirect_without_leader_is_503(role: str) -> None:
    fake = FakeBackend("n2", status=follower_status("n2", leader_id=None, role=role))
    async with serve(fake) as client:
        response = await client.post("/v1/queues/orders/messages?redirect=true", json={"body": "x"})
        body = await problem(response, 503, "no_leader")
        assert body["retry"] == "safe"
        assert response.headers["Retry-After"] == "1"
    assert fake.ops == []


@async_test
async def test_bad_redirect_value_is_400() -> None:
    fake = FakeBackend("n2", status=follower_status("n2"))
    async with serve(fake) as client:
        response = await client.get("/v1/queues?redirect=maybe")
        assert (await problem(response, 400, "invalid_request"))["field"] == "redirect"


@async_test
async def test_digest_reports_this_nodes_state_fingerprint() -> None:
    fake = FakeBackend("n2", status=follower_status("n2"))
    async with serve(fake) as client:
        response = await client.get("/v1/cluster/digest")
        assert response.status == 200
        body = await response.json()
    assert body == {"node_id": "n2", "applied_index": fake.commit_index, "digest": "ab" * 32, "keys": 3}
