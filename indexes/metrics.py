"""Similarity metrics as a cheap ranking score plus an exact correction.

Ranking happens on a surrogate that orders rows like the true score but skips
per-query constants (the query's norm for cosine, ``|q|^2`` for l2). Only the
k survivors get :func:`finalize`, which turns the surrogate into the public
``score`` (bigger is better) and ``distance`` (smaller is better).

- cosine: score = cos(x, q), distance = 1 - score
- dot:    score = x . q,     distance = -score
- l2:     distance = |x - q|, score = -distance
"""

from __future__ import annotations

from enum import StrEnum

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float32]


class Metric(StrEnum):
    COSINE = "cosine"
    DOT = "dot"
    L2 = "l2"


def inverse_norms(sqnorms: FloatArray) -> FloatArray:
    out = np.zeros_like(sqnorms)
    np.sqrt(sqnorms, out=out, where=sqnorms > 0)
    np.divide(1.0, out, out=out, where=out > 0)
    return out


def ranking_scores(
    metric: Metric, matrix: FloatArray, sqnorms: FloatArray, queries: FloatArray
) -> FloatArray:
    """Surrogate scores, shape (len(queries), len(matrix)); bigger is better."""
    scores: FloatArray = queries @ matrix.T
    if metric is Metric.COSINE:
        scores *= inverse_norms(sqnorms)[None, :]
    elif metric is Metric.L2:
        scores *= 2.0
        scores -= sqnorms[None, :]
    return scores


def finalize(metric: Metric, surrogate: FloatArray, query_sqnorms: FloatArray) -> FloatArray:
    """Public scores from surrogate scores.

    ``surrogate`` has shape (m, k) and ``query_sqnorms`` shape (m,): one
    squared norm per query row. Missing slots (-inf) stay -inf.
    """
    surrogate = surrogate.astype(np.float32, copy=False)
    qsq = np.asarray(query_sqnorms, dtype=np.float32).reshape(-1, 1)
    if metric is Metric.COSINE:
        qnorm: FloatArray = np.sqrt(qsq)
        qnorm[qnorm == 0] = 1.0
        cosine: FloatArray = surrogate / qnorm
        return cosine
    if metric is Metric.DOT:
        return surrogate
    with np.errstate(invalid="ignore"):
        distance: FloatArray = np.sqrt(np.maximum(qsq - surrogate, np.float32(0.0)))
    distance[~np.isfinite(surrogate)] = np.inf
    negated: FloatArray = -distance
    return negated
