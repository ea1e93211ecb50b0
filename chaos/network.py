"""The network as proxies: one Toxiproxy proxy per node pair for Raft, one per node for clients.

Any partition shape can be cut, and latency, bandwidth limits and connection resets added to any link.

pysyncobj keeps one TCP connection per node pair, dialled by the node whose address is greater (string order).
Each pair gets a proxy in front of the listening node; the dialling node is told to dial the proxy
(``--raft-dial-via``). Cutting a pair is a ``timeout`` toxic with timeout 0 (a blackhole) on one or both streams
of that pair's proxy; existing connections are affected at once, and reconnects through the proxy are too.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from itertools import combinations
from typing import Any

from toxiproxy import Toxiproxy

from chaos.cluster import Cluster

CUT = "cut"


@dataclass(frozen=True)
class Member:
    node_id: str
    raft_address: str


@dataclass
class RaftNetwork:
    api: Toxiproxy
    members: list[Member]
    #: (dialler id, listener id) -> proxy
    proxies: dict[tuple[str, str], Any] = field(default_factory=dict)

    def setup(self) -> dict[str, str]:
        """Creates the pair proxies; returns each node's ``--raft-dial-via`` value ('' for none)."""
        dial: dict[str, list[str]] = {m.node_id: [] for m in self.members}
        for a, b in combinations(self.members, 2):
            dialler, listener = (a, b) if a.raft_address > b.raft_address else (b, a)
            proxy = self.api.create(upstream=listener.raft_address, name=f"raft-{dialler.node_id}-{listener.node_id}")
            self.proxies[(dialler.node_id, listener.node_id)] = proxy
            dial[dialler.node_id].append(f"{listener.node_id}={proxy.listen}")
        return {node: ",".join(items) for node, items in dial.items()}

    def _proxy(self, a: str, b: str) -> tuple[Any, bool]:
        """The pair's proxy, and whether ``a`` is its dialler (so a->b traffic is its upstream stream)."""
        if (a, b) in self.proxies:
            return self.proxies[(a, b)], True
        return self.proxies[(b, a)], False

    def cut(self, a: str, b: str, *, one_way: bool = False) -> None:
        """Drops traffic between a and b; with ``one_way``, only what a sends to b."""
        proxy, a_dials = self._proxy(a, b)
        streams = ["upstream" if a_dials else "downstream"]
        if not one_way:
            streams = ["upstream", "downstream"]
        existing = {t for t in proxy.toxics()}
        for stream in streams:
            name = f"{CUT}_{stream}"
            if name not in existing:
                proxy.add_toxic(type="timeout", stream=stream, name=name, attributes={"timeout": 0})

    def isolate(self, node: str) -> None:
        for m in self.members:
            if m.node_id != node:
                self.cut(node, m.node_id)

    def partition(self, groups: Iterable[Iterable[str]]) -> None:
        """Cuts every pair whose nodes are in different groups."""
        where = {node: i for i, group in enumerate(groups) for node in group}
        for a, b in combinations(self.members, 2):
            if where.get(a.node_id) != where.get(b.node_id):
                self.cut(a.node_id, b.node_id)

    def degrade(self, toxic_type: str, attributes: dict[str, int]) -> None:
        """Adds one toxic of ``toxic_type`` to both streams of every pair (latency, bandwidth, reset_peer ...)."""
        for proxy in self.proxies.values():
            for stream in ("upstream", "downstream"):
                proxy.add_toxic(type=toxic_type, stream=stream, name=f"{toxic_type}_{stream}", attributes=attributes)

    def heal(self) -> None:
        """Removes every toxic (and re-enables every proxy), Raft and client ones alike."""
        self.api.reset()


@dataclass
class ClientProxies:
    """One proxy in front of each node's HTTP port: what the workload's clients dial."""

    api: Toxiproxy
    #: node id -> proxy
    proxies: dict[str, Any] = field(default_factory=dict)

    def setup(self, http_addresses: dict[str, str]) -> dict[str, str]:
        """Creates the proxies; returns node id -> the URL clients use for that node."""
        for node, address in http_addresses.items():
            self.proxies[node] = self.api.create(upstream=address, name=f"http-{node}")
        return {node: f"http://{proxy.listen}" for node, proxy in self.proxies.items()}

    def cut(self, node: str) -> None:
        """Clients' requests to ``node`` vanish (a blackhole: they time out, as behind a dead link)."""
        for stream in ("upstream", "downstream"):
            self.proxies[node].add_toxic(
                type="timeout", stream=stream, name=f"{CUT}_{stream}", attributes={"timeout": 0}
            )


def wire(api: Toxiproxy, cluster: Cluster) -> RaftNetwork:
    """Puts a not-yet-started cluster behind one proxy per node pair; returns the network to cut and heal."""
    network = RaftNetwork(api, [Member(n.node_id, f"127.0.0.1:{n.raft_port}") for n in cluster.nodes])
    dial = network.setup()
    cluster.node_args = {
        i: ["--raft-dial-via", dial[n.node_id]] for i, n in enumerate(cluster.nodes) if dial[n.node_id]
    }
    return network
