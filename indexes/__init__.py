"""Hand-written vector indexes behind one protocol (numpy only).

``create(kind, dim=..., metric=...)`` builds an index over its own
:class:`VectorStore`, or over a shared one passed as ``store``.
Imports nothing from the rest of Shoal.
"""

from __future__ import annotations

from typing import Any

from indexes.base import VectorIndex, distances_from_scores
from indexes.brute_force import BruteForceIndex
from indexes.hnsw import HnswIndex
from indexes.kd_tree import KdTreeIndex
from indexes.lsh import LshIndex
from indexes.metrics import Metric
from indexes.vector_store import VectorStore

KINDS = ("brute_force", "kd_tree", "lsh", "hnsw")
# Kinds that draw random numbers; their params carry a seed.
SEEDED = ("lsh", "hnsw")


class UnknownIndexKind(ValueError):
    pass


def create(
    kind: str,
    *,
    dim: int,
    metric: str | Metric = Metric.COSINE,
    store: VectorStore | None = None,
    **params: Any,
) -> VectorIndex:
    metric = Metric(metric)
    if store is None:
        store = VectorStore(dim)
    elif store.dim != dim:
        raise ValueError(f"store has dimension {store.dim}, index asked for {dim}")
    if kind == "brute_force":
        if params:
            raise ValueError(f"brute_force takes no parameters, got {sorted(params)}")
        return BruteForceIndex(store, metric)
    if kind == "kd_tree":
        return KdTreeIndex(store, metric, **params)
    if kind == "lsh":
        return LshIndex(store, metric, **params)
    if kind == "hnsw":
        return HnswIndex(store, metric, **params)
    raise UnknownIndexKind(f"unknown index type {kind!r}; available: {', '.join(KINDS)}")


__all__ = [
    "KINDS",
    "SEEDED",
    "BruteForceIndex",
    "HnswIndex",
    "KdTreeIndex",
    "LshIndex",
    "Metric",
    "UnknownIndexKind",
    "VectorIndex",
    "VectorStore",
    "create",
    "distances_from_scores",
]
