"""Numba kernels for the hot loops. They never raise; callers validate.

``top_k_corrected`` reads a block of raw dot products once per row: it applies
the metric's per-row correction and the allow-mask on the fly and keeps the
``k`` best in a small sorted buffer, so most values cost one comparison with
the current k-th best. Large blocks are split over plain Python threads (the
kernel releases the GIL).
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numba
import numpy as np
import numpy.typing as npt

# How each raw dot product becomes a ranking score.
DOT = 0  # score = dot
SCALE = 1  # score = dot * factor[j]            (cosine: factor = 1/|x_j|)
SHIFT = 2  # score = 2 * dot - factor[j]        (l2: factor = |x_j|^2)

# Above this k the insertion buffer costs more than a partition.
MAX_KERNEL_K = 128
# Below this many query rows per core the selection runs on the calling thread.
PARALLEL_ROWS = 32
_CORES = max(1, os.cpu_count() or 1)
_pool_lock = threading.Lock()
_helpers: ThreadPoolExecutor | None = None


def _pool() -> ThreadPoolExecutor:
    """Plain Python threads for the nogil kernel, started on first use.

    Not numba's parallel layer: its thread pool spins against OpenBLAS's
    after every matrix product, which cost ~15 ms per batch on two cores.
    """
    global _helpers
    with _pool_lock:
        if _helpers is None:
            _helpers = ThreadPoolExecutor(max(1, _CORES - 1), thread_name_prefix="shoal-topk")
        return _helpers


@numba.njit(cache=True, nogil=True)
def _insert(values: np.ndarray, ids: np.ndarray, value: float, position: int) -> None:
    slot = values.shape[0] - 1
    while slot > 0 and values[slot - 1] < value:
        values[slot] = values[slot - 1]
        ids[slot] = ids[slot - 1]
        slot -= 1
    values[slot] = value
    ids[slot] = position


_RUN = 16


@numba.njit(cache=True, nogil=True, inline="always")
def _score(raw: Any, mode: int, factor: np.ndarray, j: int) -> Any:
    if mode == SCALE:
        return float(raw * factor[j])
    if mode == SHIFT:
        return float(2.0 * raw - factor[j])
    return raw


@numba.njit(cache=True, nogil=True, fastmath=True)
def _run_max(row: np.ndarray, mode: int, factor: np.ndarray, lo: int, hi: int) -> float:
    best = -np.inf
    if mode == SCALE:
        for j in range(lo, hi):
            best = max(best, row[j] * factor[j])
    elif mode == SHIFT:
        for j in range(lo, hi):
            best = max(best, 2.0 * row[j] - factor[j])
    else:
        for j in range(lo, hi):
            best = max(best, row[j])
    return best


@numba.njit(inline="always", cache=True, nogil=True)
def offer(values: np.ndarray, ids: np.ndarray, value: float, row: int) -> None:
    """Keep the k best (value, row) pairs sorted best first, ties by lower row.

    Empty slots hold row -1 and sit at the end.
    """
    last = values.shape[0] - 1
    if ids[last] >= 0 and (value < values[last] or (value == values[last] and row > ids[last])):
        return
    slot = last
    while slot > 0 and (
        ids[slot - 1] < 0
        or values[slot - 1] < value
        or (values[slot - 1] == value and ids[slot - 1] > row)
    ):
        values[slot] = values[slot - 1]
        ids[slot] = ids[slot - 1]
        slot -= 1
    values[slot] = value
    ids[slot] = row


@numba.njit(cache=True, nogil=True)
def _select_row(
    row: np.ndarray,
    mode: int,
    factor: np.ndarray,
    allowed: np.ndarray,
    use_mask: bool,
    ids: np.ndarray,
    values: np.ndarray,
) -> None:
    """Top-k of one row of corrected scores; empty slots keep -1 / -inf.

    Ties keep the lower column first, so results are deterministic. Runs of
    16 values whose maximum cannot beat the current k-th best are skipped
    after one vectorized pass.
    """
    k = ids.shape[0]
    columns = row.shape[0]
    for slot in range(k):
        values[slot] = -np.inf
        ids[slot] = -1
    threshold = -np.inf
    for lo in range(0, columns, _RUN):
        hi = min(lo + _RUN, columns)
        if not use_mask and _run_max(row, mode, factor, lo, hi) <= threshold:
            continue
        for j in range(lo, hi):
            if use_mask and not allowed[j]:
                continue
            value = _score(row[j], mode, factor, j)
            if value > threshold:
                _insert(values, ids, value, j)
                threshold = values[k - 1]


@numba.njit(cache=True, nogil=True)
def _select_serial(
    dots: np.ndarray,
    mode: int,
    factor: np.ndarray,
    allowed: np.ndarray,
    use_mask: bool,
    out_ids: np.ndarray,
    out_values: np.ndarray,
) -> None:
    for i in range(dots.shape[0]):
        _select_row(dots[i], mode, factor, allowed, use_mask, out_ids[i], out_values[i])


@numba.njit(cache=True, nogil=True, fastmath=True)
def scan_top_k(
    matrix: np.ndarray,
    queries: np.ndarray,
    mode: int,
    factor: np.ndarray,
    allowed: np.ndarray,
    use_mask: bool,
    out_ids: np.ndarray,
    out_values: np.ndarray,
) -> None:
    """Dot products, correction and top-k in one pass over the rows.

    For a few queries at a time: no score buffer, and no BLAS threads to
    contend with the other requests' threads; each call stays on one core.
    """
    k = out_ids.shape[1]
    dim = matrix.shape[1]
    for i in range(queries.shape[0]):
        query = queries[i]
        values = out_values[i]
        ids = out_ids[i]
        for slot in range(k):
            values[slot] = -np.inf
            ids[slot] = -1
        threshold = -np.inf
        for j in range(matrix.shape[0]):
            if use_mask and not allowed[j]:
                continue
            product = np.float32(0.0)
            for d in range(dim):
                product += matrix[j, d] * query[d]
            value = _score(product, mode, factor, j)
            if value > threshold:
                _insert(values, ids, value, j)
                threshold = values[k - 1]


def top_k_corrected(
    dots: npt.NDArray[np.float32],
    mode: int,
    factor: npt.NDArray[np.float32],
    allowed: npt.NDArray[np.bool_] | None,
    k: int,
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
    out_ids = np.empty((dots.shape[0], k), dtype=np.int64)
    out_values = np.empty((dots.shape[0], k), dtype=np.float32)
    mask = allowed if allowed is not None else np.empty(0, dtype=np.bool_)
    use_mask = allowed is not None
    rows = dots.shape[0]
    parts = min(_CORES, rows // PARALLEL_ROWS)
    if parts <= 1:  # waking other threads costs more than selecting a few rows
        _select_serial(dots, mode, factor, mask, use_mask, out_ids, out_values)
        return out_ids, out_values
    bounds = np.linspace(0, rows, parts + 1).astype(int)
    spans = list(zip(bounds[:-1], bounds[1:], strict=True))

    def run(span: tuple[int, int]) -> None:
        lo, hi = span
        _select_serial(dots[lo:hi], mode, factor, mask, use_mask, out_ids[lo:hi], out_values[lo:hi])

    helpers = [_pool().submit(run, span) for span in spans[1:]]
    run(spans[0])
    for helper in helpers:
        helper.result()
    return out_ids, out_values
