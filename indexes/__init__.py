"""Hand-written vector indexes behind one protocol (numpy only).

``create(kind, dim=..., metric=...)`` builds an index over its own
:class:`VectorStore`, or over a shared one passed as ``store``.
Imports nothing from the rest of Shoal.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

from indexes.base import VectorIndex, distances_from_scores
from indexes.brute_force import BruteForceIndex
from indexes.hnsw import HnswIndex
from indexes.kd_tree import KdTreeIndex
from indexes.lsh import LshIndex
from indexes.metrics import Metric
from indexes.params import InvalidParameter, only
from indexes.vector_store import VectorStore

KINDS = ("brute_force", "kd_tree", "lsh", "hnsw")
# Kinds that draw random numbers; their params carry a seed.
SEEDED = ("lsh", "hnsw")
_CLASSES: dict[str, type[Any]] = {
    "brute_force": BruteForceIndex,
    "kd_tree": KdTreeIndex,
    "lsh": LshIndex,
    "hnsw": HnswIndex,
}


class UnknownIndexKind(ValueError):
    pass


def _index_class(kind: str) -> type[Any]:
    index_class = _CLASSES.get(kind)
    if index_class is None:
        raise UnknownIndexKind(f"unknown index type {kind!r}; available: {', '.join(KINDS)}")
    return index_class


def _parameter_names(index_class: type[Any]) -> list[str]:
    signature = inspect.signature(index_class)
    return [p.name for p in signature.parameters.values() if p.kind is p.KEYWORD_ONLY]


def create(
    kind: str,
    *,
    dim: int,
    metric: str | Metric = Metric.COSINE,
    store: VectorStore | None = None,
    **params: Any,
) -> VectorIndex:
    """A new empty index. Raises ValueError (InvalidParameter for a parameter,
    with a sentence naming it) when the index cannot be built as asked."""
    index_class = _index_class(kind)
    only(kind, params, _parameter_names(index_class))
    metric = Metric(metric)
    if store is None:
        store = VectorStore(dim)
    elif store.dim != dim:
        raise ValueError(f"store has dimension {store.dim}, index asked for {dim}")
    index: VectorIndex = index_class(store, metric, **params)
    return index


def check_search_params(kind: str, params: Mapping[str, Any]) -> dict[str, Any]:
    """``params`` as an index of ``kind`` would use them at search time.

    Raises InvalidParameter with a sentence when it could not use them.
    """
    options: dict[str, Any] = _index_class(kind).check_search_params(params)
    return options


__all__ = [
    "KINDS",
    "SEEDED",
    "BruteForceIndex",
    "HnswIndex",
    "InvalidParameter",
    "KdTreeIndex",
    "LshIndex",
    "Metric",
    "UnknownIndexKind",
    "VectorIndex",
    "VectorStore",
    "check_search_params",
    "create",
    "distances_from_scores",
]
