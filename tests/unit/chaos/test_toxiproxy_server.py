"""The Toxiproxy-compatible API: the unmodified toxiproxy-python client, and raw statuses and JSON shapes."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from toxiproxy.exceptions import InvalidToxic, NotFound, ProxyExists

from chaos.proxy_listener import split_hostport
from chaos.toxiproxy_server import ServerThread
from tests.unit.chaos.support import api_call, connect, ending, round_trip


def test_client_creates_lists_gets_and_destroys_proxies(client: Any, echo: str) -> None:
    assert client.running() is True
    assert b'"version"' in client.version()
    proxy = client.create(upstream=echo, name="one")
    assert (proxy.name, proxy.upstream, proxy.enabled) == ("one", echo, True)
    assert proxy.listen.startswith("127.0.0.1:") and not proxy.listen.endswith(":0")
    client.create(upstream=echo, name="two", listen="127.0.0.1:0", enabled=False)
    assert sorted(client.proxies()) == ["one", "two"]
    assert client.get_proxy("two").enabled is False
    assert client.get_proxy("missing") is None
    with connect(proxy.listen) as sock:
        round_trip(sock)
    assert client.destroy(client.get_proxy("one")) is True
    assert sorted(client.proxies()) == ["two"]
    client.destroy_all()
    assert client.proxies() == {}


def test_client_adds_lists_and_destroys_toxics(client: Any, echo: str) -> None:
    proxy = client.create(upstream=echo, name="p")
    proxy.add_toxic(type="latency", attributes={"latency": 5})
    proxy.add_toxic(type="timeout", stream="upstream", name="cut", toxicity=0.5)
    toxics = proxy.toxics()
    assert sorted(toxics) == ["cut", "latency_downstream"]
    latency = proxy.get_toxic("latency_downstream")
    assert (latency.type, latency.stream, latency.toxicity) == ("latency", "downstream", 1.0)
    assert latency.attributes == {"latency": 5, "jitter": 0}
    cut = toxics["cut"]
    assert (cut.stream, cut.toxicity, cut.attributes) == ("upstream", 0.5, {"timeout": 0})
    assert proxy.destroy_toxic("cut") is True
    assert sorted(proxy.toxics()) == ["latency_downstream"]
    assert proxy.get_toxic("cut") is None


def test_client_errors_map_to_its_exceptions(client: Any, echo: str) -> None:
    proxy = client.create(upstream=echo, name="p")
    with pytest.raises(ProxyExists):
        client.create(upstream=echo, name="p")
    proxy.add_toxic(type="latency")
    with pytest.raises(ProxyExists):  # 409 for a duplicate toxic too
        proxy.add_toxic(type="latency")
    with pytest.raises(InvalidToxic):
        proxy.add_toxic(type="no_such_toxic")
    with pytest.raises(InvalidToxic):
        proxy.add_toxic(type="latency", name="bad", attributes={"latency": "slow"})
    with pytest.raises(NotFound):
        proxy.destroy_toxic("missing")
    proxy.destroy()
    with pytest.raises(NotFound):
        proxy.destroy()


def test_client_populate_down_and_reset(client: Any, server: ServerThread, echo: str) -> None:
    created = client.populate([{"name": "a", "upstream": echo, "listen": "127.0.0.1:0"}])
    listen = created[0].listen
    assert client.populate([{"name": "a", "upstream": echo, "listen": listen}]) == []  # unchanged: kept
    proxy = client.get_proxy("a")
    with proxy.down():
        assert api_call(server, "GET", "/proxies/a")[1]["enabled"] is False
    assert api_call(server, "GET", "/proxies/a")[1]["enabled"] is True
    proxy.add_toxic(type="timeout")
    proxy.disable()
    assert client.reset() is True
    assert client.get_proxy("a").enabled is True
    assert proxy.toxics() == {}
    with connect(listen) as sock:
        round_trip(sock)


def test_proxy_statuses_and_shapes(server: ServerThread, echo: str) -> None:
    assert api_call(server, "GET", "/version") == (200, {"version": "2.12.0"})
    status, body = api_call(server, "POST", "/proxies", {"name": "p", "upstream": echo, "listen": "127.0.0.1:0"})
    assert status == 201
    assert set(body) == {"name", "listen", "upstream", "enabled", "toxics"}
    assert body["listen"] != "127.0.0.1:0" and body["enabled"] is True and body["toxics"] == []
    assert api_call(server, "POST", "/proxies", {"name": "p", "upstream": echo}) == (
        409,
        {"error": "proxy already exists", "status": 409},
    )
    assert api_call(server, "POST", "/proxies", {"name": "q"}) == (
        400,
        {"error": "missing required field: upstream", "status": 400},
    )
    assert api_call(server, "POST", "/proxies", {"upstream": echo})[0] == 400
    assert api_call(server, "POST", "/proxies", {"name": "q", "upstream": "no-port"})[0] == 400
    assert api_call(server, "POST", "/proxies", {"name": "q", "upstream": echo, "enabled": "yes"})[0] == 400
    assert api_call(server, "POST", "/proxies", b"{not json")[0] == 400
    assert api_call(server, "GET", "/proxies") == (200, {"p": body})
    assert api_call(server, "GET", "/proxies/p") == (200, body)
    assert api_call(server, "GET", "/proxies/nope") == (404, {"error": "proxy not found", "status": 404})
    assert api_call(server, "POST", "/proxies/p", {"enabled": False}) == (200, {**body, "enabled": False})
    assert api_call(server, "PATCH", "/proxies/p", {"enabled": True}) == (200, body)  # same address again
    assert api_call(server, "DELETE", "/proxies/p") == (204, "")
    assert api_call(server, "DELETE", "/proxies/p")[0] == 404
    assert api_call(server, "POST", "/reset") == (204, "")


def test_listen_address_in_use_is_an_error(server: ServerThread, echo: str) -> None:
    first = api_call(server, "POST", "/proxies", {"name": "a", "upstream": echo})[1]
    status, body = api_call(server, "POST", "/proxies", {"name": "b", "upstream": echo, "listen": first["listen"]})
    assert status == 500 and "address already in use" in body["error"]
    assert api_call(server, "GET", "/proxies/b")[0] == 404


def test_toxic_statuses_and_shapes(server: ServerThread, echo: str) -> None:
    api_call(server, "POST", "/proxies", {"name": "p", "upstream": echo})
    status, toxic = api_call(server, "POST", "/proxies/p/toxics", {"type": "latency", "attributes": {"latency": 10}})
    assert status == 200
    assert toxic == {
        "name": "latency_downstream",
        "type": "latency",
        "stream": "downstream",
        "toxicity": 1.0,
        "attributes": {"latency": 10, "jitter": 0},
    }
    assert api_call(server, "POST", "/proxies/p/toxics", {"type": "latency"}) == (
        409,
        {"error": "toxic already exists", "status": 409},
    )
    bad: list[dict[str, Any]] = [
        {"type": "nope"},
        {"type": "latency", "name": "x", "stream": "sideways"},
        {"type": "latency", "name": "x", "toxicity": 1.5},
        {"type": "latency", "name": "x", "attributes": {"latency": -1}},
        {"type": "latency", "name": "x", "attributes": {"latency": "1"}},
        {"type": "latency", "name": "x", "attributes": {"latancy": 1}},
    ]
    for request in bad:
        status, error = api_call(server, "POST", "/proxies/p/toxics", request)
        assert (status, error["status"]) == (400, 400), request
    assert api_call(server, "POST", "/proxies/nope/toxics", {"type": "latency"})[0] == 404
    assert api_call(server, "GET", "/proxies/p/toxics") == (200, [toxic])
    assert api_call(server, "GET", "/proxies/p/toxics/latency_downstream") == (200, toxic)
    assert api_call(server, "GET", "/proxies/p/toxics/nope") == (404, {"error": "toxic not found", "status": 404})
    updated = {**toxic, "toxicity": 0.5, "attributes": {"latency": 10, "jitter": 3}}
    assert api_call(
        server, "POST", "/proxies/p/toxics/latency_downstream", {"toxicity": 0.5, "attributes": {"jitter": 3}}
    ) == (200, updated)
    assert api_call(server, "GET", "/proxies/p")[1]["toxics"] == [updated]
    assert api_call(server, "POST", "/proxies/p/toxics/nope", {"toxicity": 0.5})[0] == 404
    updated["toxicity"] = 0.25
    assert api_call(server, "PATCH", "/proxies/p/toxics/latency_downstream", {"toxicity": 0.25}) == (200, updated)
    assert api_call(server, "DELETE", "/proxies/p/toxics/latency_downstream") == (204, "")
    assert api_call(server, "DELETE", "/proxies/p/toxics/latency_downstream")[0] == 404
    status, toxic = api_call(server, "POST", "/proxies/p/toxics", {"type": "slicer", "stream": "UPSTREAM"})
    assert (status, toxic["name"], toxic["attributes"]) == (
        200,
        "slicer_upstream",
        {"average_size": 0, "size_variation": 0, "delay": 0},
    )
    api_call(server, "POST", "/reset")
    assert api_call(server, "GET", "/proxies/p/toxics") == (200, [])


def test_populate_creates_keeps_and_replaces(server: ServerThread, echo: str) -> None:
    status, body = api_call(server, "POST", "/populate", [{"name": "a", "upstream": echo}])
    assert status == 201 and [p["name"] for p in body["proxies"]] == ["a"]
    listen = body["proxies"][0]["listen"]
    api_call(server, "POST", "/proxies/a/toxics", {"type": "latency"})
    kept = api_call(server, "POST", "/populate", [{"name": "a", "upstream": echo, "listen": listen}])[1]["proxies"][0]
    assert kept["toxics"] != []
    status, body = api_call(server, "POST", "/populate", [{"name": "a", "upstream": "127.0.0.1:1", "listen": listen}])
    assert status == 201 and body["proxies"][0]["upstream"] == "127.0.0.1:1" and body["proxies"][0]["toxics"] == []
    assert api_call(server, "POST", "/populate", {"name": "a"})[0] == 400


def test_update_upstream_moves_new_connections(client: Any, server: ServerThread, echo: str) -> None:
    proxy = client.create(upstream="127.0.0.1:1", name="p")  # nothing listens on port 1
    with connect(proxy.listen) as sock:
        assert ending(sock)[0] in ("eof", "reset")  # the upstream dial failed: the client is closed
    assert api_call(server, "POST", "/proxies/p", {"upstream": echo})[1]["upstream"] == echo
    with connect(proxy.listen) as sock:
        round_trip(sock)


def test_server_thread_reports_a_port_in_use(server: ServerThread) -> None:
    with pytest.raises(OSError), ServerThread(port=server.port):
        pass


def test_standalone_command_serves_until_sigterm() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "chaos.toxiproxy_server", "--port", "0"],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).parents[3],
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        assert line.startswith("toxiproxy-compatible API on http://127.0.0.1:"), line
        assert api_call(split_hostport(line.rpartition("/")[2]), "GET", "/version")[0] == 200
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
