"""What is replicated and when it counts as committed.

Today a cluster of one (:mod:`replication.solo`): an entry is committed once
it is durable on this node's disk. Imports only :mod:`wal`.
"""
