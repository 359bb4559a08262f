"""Exact search: one matrix product over the store, then argpartition top-k.

Build O(1) beyond the store, query O(n*d), no extra memory. Also the oracle
that the approximate indexes are measured against.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from indexes.base import BoolArray, FloatArray, IdArray, query_matrix
from indexes.metrics import Metric, finalize, ranking_scores
from indexes.topk import top_k_rows
from indexes.vector_store import VectorStore

# Score blocks are kept under this many float32 cells (256 MiB).
_BLOCK_CELLS = 64 << 20


class BruteForceIndex:
    kind = "brute_force"
    is_exact = True
    supports_incremental = True

    def __init__(self, store: VectorStore, metric: Metric = Metric.COSINE) -> None:
        self.store = store
        self.metric = metric

    def add(self, ids: IdArray, vectors: FloatArray) -> None:
        self.store.put(ids, vectors)

    def remove(self, ids: IdArray) -> None:
        self.store.delete(ids)

    def _allowed(self, mask: BoolArray | None) -> BoolArray | None:
        """Rows that may be returned, or None when every row is live and allowed."""
        live = self.store.live()
        if mask is None:
            return None if self.store.live_count == len(live) else live
        allowed = np.zeros(len(live), dtype=np.bool_)
        span = min(len(mask), len(live))
        np.logical_and(live[:span], mask[:span], out=allowed[:span])
        return allowed

    def search_batch(
        self, queries: FloatArray, k: int, mask: BoolArray | None = None, **params: Any
    ) -> tuple[IdArray, FloatArray]:
        if params:
            raise TypeError(f"brute_force search takes no parameters, got {sorted(params)}")
        queries = query_matrix(queries, self.store.dim)
        matrix, sqnorms = self.store.matrix(), self.store.sqnorms()
        allowed = self._allowed(mask)
        m, n = len(queries), len(matrix)
        width = min(k, n)
        ids = np.full((m, width), -1, dtype=np.int64)
        scores = np.full((m, width), -np.inf, dtype=np.float32)
        if width == 0 or (allowed is not None and not allowed.any()):
            return ids, scores
        rows = None
        if allowed is not None and np.count_nonzero(allowed) < n // 2:
            # Selective filters: score only the allowed rows.
            rows = np.flatnonzero(allowed)
            matrix, sqnorms, allowed = matrix[rows], sqnorms[rows], None
        excluded = None if allowed is None else ~allowed
        block = max(1, _BLOCK_CELLS // max(1, len(matrix)))
        query_sq = np.einsum("ij,ij->i", queries, queries)
        for lo in range(0, m, block):
            hi = min(m, lo + block)
            surrogate = ranking_scores(self.metric, matrix, sqnorms, queries[lo:hi])
            if excluded is not None:
                surrogate[:, excluded] = -np.inf
            positions, best = top_k_rows(surrogate, width)
            if rows is not None:
                positions = np.where(positions >= 0, rows[np.maximum(positions, 0)], -1)
            got = positions.shape[1]
            ids[lo:hi, :got] = positions
            scores[lo:hi, :got] = finalize(self.metric, best, query_sq[lo:hi])
        return ids, scores

    def search(
        self, query: FloatArray, k: int, mask: BoolArray | None = None, **params: Any
    ) -> tuple[IdArray, FloatArray]:
        ids, scores = self.search_batch(query_matrix(query, self.store.dim), k, mask, **params)
        found = ids[0] >= 0
        return ids[0][found], scores[0][found]

    def memory_bytes(self) -> int:
        return 0

    def state(self) -> dict[str, Any]:
        return {}
