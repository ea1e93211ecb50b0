"""The node: one process that runs the Raft replica (``raft``), the group committer and the HTTP API over them.

``node.Node`` is the composition root and implements ``api.backend.Backend``; ``server`` is the process. Nothing
here imports ``api`` except ``server``, which builds the app.
"""
