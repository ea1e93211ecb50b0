"""The Raft adapter: the only package that imports pysyncobj (an import-linter contract keeps it so).

Importing it changes nothing in pysyncobj; ``patches.install()`` (called when a ``QueueReplica`` is created) does.
"""
