"""Numba kernels of the KD-tree: bounds per box and best-first search.

Scores are "bigger is better" and exact: cosine similarity, dot product, or
the negated squared l2 distance. A node's bound is the best score any point
inside its box could have, so a node whose bound cannot beat the current
k-th best is never opened and the search stays exact.
"""

from __future__ import annotations

from typing import Any

import numba
import numpy as np

from indexes.hnsw_kernels import heap_pop, heap_push
from indexes.kernels import offer

COSINE = 0
L2 = 1
DOT = 2


@numba.njit(inline="always", fastmath=True, cache=True, nogil=True)
def _score(
    data: np.ndarray, aux: np.ndarray, mode: int, row: int, query: np.ndarray, query_aux: float
) -> Any:
    product = np.float32(0.0)
    for j in range(query.shape[0]):
        product += data[row, j] * query[j]
    if mode == COSINE:
        return product * aux[row] * query_aux
    if mode == L2:
        return 2.0 * product - aux[row] - query_aux
    return product


@numba.njit(inline="always", fastmath=True, cache=True, nogil=True)
def _bound(
    lo: np.ndarray, hi: np.ndarray, node: int, mode: int, query: np.ndarray, unit_query: np.ndarray
) -> Any:
    total = np.float32(0.0)
    if mode == L2:
        for j in range(query.shape[0]):
            gap = max(lo[node, j] - query[j], np.float32(0.0), query[j] - hi[node, j])
            total += gap * gap
        return -total
    target = unit_query if mode == COSINE else query
    for j in range(query.shape[0]):
        total += max(target[j] * lo[node, j], target[j] * hi[node, j])
    return total


@numba.njit(fastmath=True, cache=True, nogil=True)
def search_batch(
    data: np.ndarray,
    aux: np.ndarray,
    mode: int,
    queries: np.ndarray,
    query_aux: np.ndarray,
    unit_queries: np.ndarray,
    lo: np.ndarray,
    hi: np.ndarray,
    left: np.ndarray,
    right: np.ndarray,
    start: np.ndarray,
    end: np.ndarray,
    order: np.ndarray,
    pending: np.ndarray,
    usable: np.ndarray,
    out_ids: np.ndarray,
    out_values: np.ndarray,
) -> None:
    """Exact top-k per query over the tree plus the pending rows.

    ``usable[row]`` says whether a row may be returned (live, allowed by the
    filter, and for tree leaves still holding the vector the tree was built
    with).
    """
    n_nodes = lo.shape[0]
    heap_keys = np.empty(max(16, 2 * n_nodes + 2), dtype=np.float32)
    heap_values = np.empty(max(16, 2 * n_nodes + 2), dtype=np.int64)
    for i in range(queries.shape[0]):
        values = out_values[i]
        ids = out_ids[i]
        values[:] = -np.inf
        ids[:] = -1
        query = queries[i]
        for p in range(pending.shape[0]):
            row = pending[p]
            if usable[row]:
                offer(values, ids, _score(data, aux, mode, row, query, query_aux[i]), row)
        if n_nodes == 0:
            continue
        size = heap_push(
            heap_keys, heap_values, 0, -_bound(lo, hi, 0, mode, query, unit_queries[i]), 0
        )
        while size > 0:
            bound = -heap_keys[0]
            node = heap_values[0]
            size = heap_pop(heap_keys, heap_values, size)
            # The bound is computed in float32; widen it so rounding never
            # prunes a box that holds a true result.
            if (
                ids[ids.shape[0] - 1] >= 0
                and bound + 1e-4 * (1.0 + abs(bound)) < values[values.shape[0] - 1]
            ):
                break
            if left[node] < 0:
                for position in range(start[node], end[node]):
                    row = order[position]
                    if usable[row]:
                        offer(values, ids, _score(data, aux, mode, row, query, query_aux[i]), row)
                continue
            for child in (left[node], right[node]):
                size = heap_push(
                    heap_keys,
                    heap_values,
                    size,
                    -_bound(lo, hi, child, mode, query, unit_queries[i]),
                    child,
                )
