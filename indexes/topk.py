"""Top-k selection over score rows with argpartition (bigger is better).

Excluded rows carry ``-inf`` and never appear in a result.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float32]
IdArray = npt.NDArray[np.int64]


def top_k(scores: FloatArray, k: int) -> IdArray:
    """Positions of the ``k`` best finite scores, best first."""
    n = scores.shape[0]
    if n == 0 or k <= 0:
        return np.empty(0, dtype=np.int64)
    candidates = np.argpartition(-scores, k - 1)[:k] if k < n else np.arange(n)
    candidates = candidates[np.isfinite(scores[candidates])]
    order = np.argsort(-scores[candidates], kind="stable")
    return candidates[order].astype(np.int64, copy=False)


def top_k_rows(scores: FloatArray, k: int) -> tuple[IdArray, FloatArray]:
    """Row-wise top-k of a (m, n) score block.

    Returns positions (m, k') and their scores, best first, where
    ``k' = min(k, n)``; slots with no finite score hold -1 and ``-inf``.
    """
    m, n = scores.shape
    k = min(k, n)
    if k == 0:
        return np.empty((m, 0), dtype=np.int64), np.empty((m, 0), dtype=np.float32)
    if k < n:
        part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    else:
        part = np.broadcast_to(np.arange(n), (m, n)).copy()
    part_scores = np.take_along_axis(scores, part, axis=1)
    order = np.argsort(-part_scores, axis=1, kind="stable")
    positions = np.take_along_axis(part, order, axis=1).astype(np.int64, copy=False)
    best = np.take_along_axis(part_scores, order, axis=1)
    missing = ~np.isfinite(best)
    if missing.any():
        positions[missing] = -1
    return positions, best
