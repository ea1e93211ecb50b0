"""Toxics on real TCP connections through the proxy to an echo server, added and removed on live connections."""

from __future__ import annotations

import os
import socket
import threading
import time
from typing import Any

import pytest

from chaos.toxiproxy_server import ServerThread
from tests.unit.chaos.support import api_call, connect, ending, recv_exactly, round_trip, silent_for


@pytest.fixture
def proxy(client: Any, echo: str) -> Any:
    return client.create(upstream=echo, name="echo")


def test_bytes_flow_both_ways_intact(proxy: Any) -> None:
    payload = os.urandom(1_000_000)
    with connect(proxy.listen) as sock:
        round_trip(sock, b"hello")
        sender = threading.Thread(target=sock.sendall, args=(payload,))
        sender.start()
        try:
            assert recv_exactly(sock, len(payload)) == payload
        finally:
            sender.join(5)


def test_latency_delays_each_way_and_keeps_order(proxy: Any) -> None:
    with connect(proxy.listen) as sock:
        round_trip(sock)
        proxy.add_toxic(type="latency", attributes={"latency": 150})
        assert round_trip(sock) >= 0.15
        proxy.add_toxic(type="latency", stream="upstream", attributes={"latency": 100, "jitter": 20})
        assert round_trip(sock) >= 0.15 + 0.08
        proxy.destroy_toxic("latency_upstream")
        # Chunks are delayed, not queued behind each other: five sends 20 ms apart all arrive ~150 ms later.
        start = time.monotonic()
        for i in range(5):
            sock.sendall(b"%d" % i)
            time.sleep(0.02)
        assert recv_exactly(sock, 5) == b"01234"
        assert 0.15 <= time.monotonic() - start < 5 * 0.15


def test_updating_a_toxic_reaches_a_live_connection(server: ServerThread, proxy: Any) -> None:
    with connect(proxy.listen) as sock:
        proxy.add_toxic(type="latency", attributes={"latency": 0})
        round_trip(sock)
        api_call(server, "POST", "/proxies/echo/toxics/latency_downstream", {"attributes": {"latency": 200}})
        assert round_trip(sock) >= 0.2


def test_blackhole_cuts_an_existing_connection_and_removal_closes_it(proxy: Any) -> None:
    with connect(proxy.listen) as sock:
        round_trip(sock)
        proxy.add_toxic(type="timeout", attributes={"timeout": 0})
        sock.sendall(b"lost")
        assert silent_for(sock, 0.3)
        proxy.destroy_toxic("timeout_downstream")
        assert ending(sock) == ("eof", b"")


def test_upstream_blackhole_drops_what_the_client_sends(proxy: Any) -> None:
    with connect(proxy.listen) as sock:
        round_trip(sock)
        proxy.add_toxic(type="timeout", stream="upstream", attributes={"timeout": 0})
        sock.sendall(b"lost")
        assert silent_for(sock, 0.3)


def test_timeout_closes_the_connection_after_its_delay(proxy: Any) -> None:
    with connect(proxy.listen) as sock:
        round_trip(sock)
        start = time.monotonic()
        proxy.add_toxic(type="timeout", attributes={"timeout": 200})
        sock.sendall(b"lost")
        assert ending(sock) == ("eof", b"")
        assert time.monotonic() - start >= 0.2


def test_disabled_proxy_refuses_and_drops_then_accepts_again(client: Any, proxy: Any) -> None:
    with connect(proxy.listen) as sock:
        round_trip(sock)
        proxy.disable()
        assert ending(sock)[0] in ("eof", "reset")
    with pytest.raises(ConnectionRefusedError):
        connect(proxy.listen).close()
    proxy.enable()
    assert client.get_proxy("echo").listen == proxy.listen
    with connect(proxy.listen) as sock:
        round_trip(sock)


def test_reset_peer_resets_the_connection(proxy: Any) -> None:
    with connect(proxy.listen) as sock:
        round_trip(sock)
        proxy.add_toxic(type="reset_peer", attributes={"timeout": 100})
        start = time.monotonic()
        sock.sendall(b"boom")
        assert ending(sock) == ("reset", b"")
        assert time.monotonic() - start >= 0.1


def test_a_triggered_reset_peer_still_resets_after_the_toxic_is_removed(proxy: Any) -> None:
    """The first chunk was taken: cancelling the reset would leave a live stream with a hole in it (found by the
    chaos suite: pysyncobj peers then waited on each other's lost handshake for ever)."""
    with connect(proxy.listen) as sock:
        round_trip(sock)
        proxy.add_toxic(type="reset_peer", name="rp", attributes={"timeout": 300})
        sock.sendall(b"lost")
        silent_for(sock, 0.1)  # the countdown has started
        proxy.destroy_toxic("rp")
        assert ending(sock) == ("reset", b"")
    with connect(proxy.listen) as sock:  # new connections are clean again
        round_trip(sock)


def test_limit_data_closes_after_that_many_bytes(proxy: Any) -> None:
    with connect(proxy.listen) as sock:
        proxy.add_toxic(type="limit_data", attributes={"bytes": 10})
        sock.sendall(b"0123456789abcdefghij")
        assert ending(sock) == ("eof", b"0123456789")


def test_bandwidth_limits_the_rate(proxy: Any) -> None:
    payload = os.urandom(60_000)
    with connect(proxy.listen) as sock:
        proxy.add_toxic(type="bandwidth", attributes={"rate": 60})  # KB/s, 1 KB = 1000 bytes
        start = time.monotonic()
        sock.sendall(payload)
        assert recv_exactly(sock, len(payload)) == payload
        assert time.monotonic() - start >= 0.8


def test_slicer_delivers_every_byte_in_order(proxy: Any) -> None:
    payload = os.urandom(20_000)
    with connect(proxy.listen) as sock:
        proxy.add_toxic(type="slicer", attributes={"average_size": 100, "size_variation": 50, "delay": 100})
        proxy.add_toxic(type="slicer", stream="upstream", attributes={"average_size": 7, "size_variation": 6})
        sock.sendall(payload)
        assert recv_exactly(sock, len(payload)) == payload


def test_slow_close_delays_the_close(client: Any) -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    with listener:
        proxy = client.create(upstream=f"127.0.0.1:{listener.getsockname()[1]}", name="closer")
        proxy.add_toxic(type="slow_close", attributes={"delay": 200})
        with connect(proxy.listen) as sock:
            accepted, _ = listener.accept()
            start = time.monotonic()
            accepted.close()
            assert ending(sock) == ("eof", b"")
            assert time.monotonic() - start >= 0.2


def test_reset_removes_toxics_on_live_connections(client: Any, proxy: Any) -> None:
    with connect(proxy.listen) as sock:
        proxy.add_toxic(type="latency", attributes={"latency": 1000})
        client.reset()
        assert proxy.toxics() == {}
        assert round_trip(sock) < 1.0


def test_toxicity_zero_never_applies(proxy: Any) -> None:
    with connect(proxy.listen) as old:
        proxy.add_toxic(type="timeout", toxicity=0.0, attributes={"timeout": 0})
        proxy.add_toxic(type="reset_peer", stream="upstream", toxicity=0.0)
        round_trip(old)
        for _ in range(5):
            with connect(proxy.listen) as new:
                round_trip(new)
        proxy.destroy_toxic("timeout_downstream")  # never applied, so the connection stays open
        round_trip(old)


def test_partition_and_heal_as_the_raft_network_does(client: Any, proxy: Any) -> None:
    """Both streams cut on a long-lived connection; ``reset`` heals by closing it, and redialling works."""
    with connect(proxy.listen) as sock:
        round_trip(sock)
        for stream in ("upstream", "downstream"):
            proxy.add_toxic(type="timeout", stream=stream, name=f"cut_{stream}", attributes={"timeout": 0})
        sock.sendall(b"lost")
        assert silent_for(sock, 0.3)
        client.reset()
        assert ending(sock) == ("eof", b"")
    with connect(proxy.listen) as sock:
        round_trip(sock)
