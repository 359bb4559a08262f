"""Numba kernel of the LSH index: gather bucket members, score them exactly."""

from __future__ import annotations

from typing import Any

import numba
import numpy as np

from indexes.kernels import offer
from indexes.prefetch import prefetch_row

MODES = {"cosine": 0, "l2": 1, "dot": 2}


@numba.njit(inline="always", fastmath=True, cache=True, nogil=True)
def _score(
    data: np.ndarray, sqnorms: np.ndarray, mode: int, row: int, query: np.ndarray, query_sq: float
) -> Any:
    product = np.float32(0.0)
    for j in range(query.shape[0]):
        product += data[row, j] * query[j]
    if mode == 0:
        norms = np.sqrt(sqnorms[row] * query_sq)
        return product / norms if norms > 0 else np.float32(0.0)
    if mode == 1:
        return 2.0 * product - sqnorms[row] - query_sq
    return product


@numba.njit(cache=True, nogil=True)
def _first_at_least(keys: np.ndarray, key: int) -> int:
    lo, hi = 0, keys.shape[0]
    while lo < hi:
        middle = (lo + hi) >> 1
        if keys[middle] < key:
            lo = middle + 1
        else:
            hi = middle
    return lo


@numba.njit(fastmath=True, cache=True, nogil=True)
def search_batch(
    data: np.ndarray,
    sqnorms: np.ndarray,
    mode: int,
    queries: np.ndarray,
    query_sq: np.ndarray,
    probe_keys: np.ndarray,
    sorted_keys: np.ndarray,
    sorted_rows: np.ndarray,
    usable: np.ndarray,
    out_ids: np.ndarray,
    out_values: np.ndarray,
) -> None:
    """Top-k (bigger is better) among the rows in the probed buckets."""
    seen = np.zeros(usable.shape[0], dtype=np.uint32)
    tag = np.uint32(0)
    tables = sorted_keys.shape[0]
    candidates = np.empty(1024, dtype=np.int64)
    for i in range(queries.shape[0]):
        tag += np.uint32(1)
        values = out_values[i]
        ids = out_ids[i]
        values[:] = -np.inf
        ids[:] = -1
        query = queries[i]
        # Gather the distinct usable rows of every probed bucket, asking for
        # their vectors as we go, then score them: the loads overlap.
        count = 0
        for t in range(tables):
            keys = sorted_keys[t]
            for p in range(probe_keys.shape[2]):
                key = probe_keys[i, t, p]
                position = _first_at_least(keys, key)
                while position < keys.shape[0] and keys[position] == key:
                    row = sorted_rows[t, position]
                    position += 1
                    if seen[row] == tag or not usable[row]:
                        continue
                    seen[row] = tag
                    prefetch_row(data, row)
                    if count == candidates.shape[0]:
                        grown = np.empty(2 * count, dtype=np.int64)
                        grown[:count] = candidates
                        candidates = grown
                    candidates[count] = row
                    count += 1
        for c in range(count):
            row = candidates[c]
            offer(values, ids, _score(data, sqnorms, mode, row, query, query_sq[i]), row)
