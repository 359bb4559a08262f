"""What is replicated and when it counts as committed.

:mod:`replication.raft` is the Raft core (no I/O of its own),
:mod:`replication.runner` drives it on the event loop and owns the log,
:mod:`replication.transport` carries its messages over HTTP. A single node
is a cluster of one on the same path. Imports only :mod:`wal`.
"""
