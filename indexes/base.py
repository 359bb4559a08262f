"""The protocol every vector index implements.

Ids are dense non-negative row numbers in a :class:`VectorStore`; several
indexes may share one store (the vectors live once). ``search`` returns row
ids and public scores (bigger is better), best first; ``mask`` is a boolean
array over rows (rows beyond its end are excluded) saying which rows may be
returned.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from indexes.metrics import Metric
from indexes.vector_store import VectorStore

IdArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float32]
BoolArray = npt.NDArray[np.bool_]


class VectorIndex(Protocol):
    kind: str
    metric: Metric
    store: VectorStore
    is_exact: bool
    supports_incremental: bool

    def add(self, ids: IdArray, vectors: FloatArray) -> None:
        """Write vectors at rows ``ids`` (overwriting existing rows)."""

    def remove(self, ids: IdArray) -> None:
        """Stop returning these rows; removing an absent row is a no-op."""

    def search(
        self, query: FloatArray, k: int, mask: BoolArray | None = None, **params: Any
    ) -> tuple[IdArray, FloatArray]: ...

    def search_batch(
        self, queries: FloatArray, k: int, mask: BoolArray | None = None, **params: Any
    ) -> tuple[IdArray, FloatArray]:
        """(m, k) ids and scores; missing slots hold -1 and -inf."""

    def memory_bytes(self) -> int:
        """Bytes held by the index structure, not counting the shared store."""

    def state(self) -> dict[str, Any]:
        """What a snapshot must keep beyond the vectors to rebuild this exact index.

        Depends only on what was applied, never on array capacities, so equal
        replicas report equal states."""

    def restore(self, state: dict[str, Any]) -> None:
        """Rebuild from :meth:`state` over a store that already holds the live vectors."""


def distances_from_scores(metric: Metric, scores: FloatArray) -> FloatArray:
    """The public distance (smaller is better) for public scores."""
    if metric is Metric.COSINE:
        return np.float32(1.0) - scores
    return -scores


def query_matrix(queries: FloatArray, dim: int) -> FloatArray:
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    if queries.ndim == 1:
        queries = queries[None, :]
    if queries.ndim != 2 or queries.shape[1] != dim:
        raise ValueError(f"queries must have {dim} columns, got shape {queries.shape}")
    return queries
