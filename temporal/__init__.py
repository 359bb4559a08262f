"""Retrieval-augmented questions as a Temporal workflow.

preprocess -> embed -> retrieve (from a healthy follower) -> rerank -> answer,
each an activity with its own timeout and retry policy; a ``cancel`` signal
and a ``step`` query. :mod:`temporal.worker` runs it (``shoal worker``).
"""
