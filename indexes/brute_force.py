"""Exact search: one matrix product over the store, then argpartition top-k.

Build O(1) beyond the store, query O(n*d), no extra memory. Also the oracle
that the approximate indexes are measured against.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

import numpy as np

from indexes import kernels
from indexes.base import BoolArray, FloatArray, IdArray, query_matrix
from indexes.metrics import Metric, finalize, ranking_scores
from indexes.params import only
from indexes.topk import top_k_rows
from indexes.vector_store import VectorStore

# Score blocks are kept under this many float32 cells (128 MiB). Fewer,
# larger blocks win: each hand-off between the BLAS threads and the selection
# kernel's threads costs milliseconds on a 2-core machine.
_BLOCK_CELLS = 32 << 20
_scratch = threading.local()
# Up to this many queries at once are scanned on the calling thread
# (kernels.scan_top_k); more go through one BLAS product.
SCAN_BELOW = 4
_MODES = {Metric.COSINE: kernels.SCALE, Metric.L2: kernels.SHIFT, Metric.DOT: kernels.DOT}


def _scratch_block(rows: int, columns: int) -> FloatArray:
    """A per-thread output buffer for the score block, reused across calls.

    A fresh array of tens of megabytes costs more in page faults than the
    matrix product saves; each thread keeps at most one block's worth.
    """
    cells = rows * columns
    buffer: FloatArray | None = getattr(_scratch, "buffer", None)
    if buffer is None or buffer.size < cells:
        buffer = np.empty(cells, dtype=np.float32)
        _scratch.buffer = buffer
    return buffer[:cells].reshape(rows, columns)


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

    @staticmethod
    def check_search_params(params: Mapping[str, Any]) -> dict[str, Any]:
        """The search parameters as this index uses them; InvalidParameter if it cannot."""
        only("brute_force search", params, ())
        return {}

    def search_batch(
        self, queries: FloatArray, k: int, mask: BoolArray | None = None, **params: Any
    ) -> tuple[IdArray, FloatArray]:
        self.check_search_params(params)
        queries = query_matrix(queries, self.store.dim)
        matrix, sqnorms = self.store.matrix(), self.store.sqnorms()
        factor = self.store.inverse_norms() if self.metric is Metric.COSINE else sqnorms
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
            matrix, sqnorms, factor = matrix[rows], sqnorms[rows], factor[rows]
            allowed = None
        blocks = -(-m * max(1, len(matrix)) // _BLOCK_CELLS)
        block = -(-m // blocks)
        query_sq = np.einsum("ij,ij->i", queries, queries)
        for lo in range(0, m, block):
            hi = min(m, lo + block)
            positions, best = self._select(queries[lo:hi], matrix, sqnorms, factor, allowed, width)
            if rows is not None:
                positions = np.where(positions >= 0, rows[np.maximum(positions, 0)], -1)
            got = positions.shape[1]
            ids[lo:hi, :got] = positions
            scores[lo:hi, :got] = finalize(self.metric, best, query_sq[lo:hi])
        return ids, scores

    def _select(
        self,
        queries: FloatArray,
        matrix: FloatArray,
        sqnorms: FloatArray,
        factor: FloatArray,
        allowed: BoolArray | None,
        k: int,
    ) -> tuple[IdArray, FloatArray]:
        """Positions and surrogate scores of the k best rows for each query.

        ``factor`` is the per-row correction: inverse norms (cosine) or
        squared norms (l2).
        """
        if k > kernels.MAX_KERNEL_K:
            surrogate = ranking_scores(self.metric, matrix, sqnorms, queries)
            if allowed is not None:
                surrogate[:, ~allowed] = -np.inf
            return top_k_rows(surrogate, k)
        mode = _MODES[self.metric]
        if len(queries) <= SCAN_BELOW:
            ids = np.empty((len(queries), k), dtype=np.int64)
            values = np.empty((len(queries), k), dtype=np.float32)
            mask = allowed if allowed is not None else np.empty(0, dtype=np.bool_)
            kernels.scan_top_k(matrix, queries, mode, factor, mask, allowed is not None, ids,
                               values)  # fmt: skip
            return ids, values
        dots = _scratch_block(len(queries), len(matrix))
        np.matmul(queries, matrix.T, out=dots)
        return kernels.top_k_corrected(dots, mode, factor, allowed, k)

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

    def restore(self, state: dict[str, Any]) -> None:
        """Nothing to do: the store is the whole index."""
