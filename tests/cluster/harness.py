"""The cluster tests drive real processes through the same black-box cluster the chaos tools use."""

from chaos.cluster import SECRET, Cluster, NodeProcess, free_ports, http_json, running_cluster, wait_until

__all__ = ["SECRET", "Cluster", "NodeProcess", "free_ports", "http_json", "running_cluster", "wait_until"]
