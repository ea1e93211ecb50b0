"""The chaos suite: starts real node processes and breaks them from outside (signals, proxies, power cuts).

It imports nothing from raft_queue, api or state_machine: it knows the system only as a user or operator does.
"""
