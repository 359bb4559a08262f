"""Compile (or load from numba's cache) every kernel before serving.

Without this, the first search or insert after a start pays for numba's
compilation (over a second on a fresh install) or for loading its cache
(tenths of a second), inside a request. Each index kind is built over a few
rows and searched once per metric, with and without a filter mask, so every
kernel signature a request can reach is ready before the node says ready.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from indexes import KINDS, create
from indexes.brute_force import SCAN_BELOW

# Batches above SCAN_BELOW queries take a matrix product and a separate selection.
BATCH_ROWS = SCAN_BELOW + 1
_PARAMS: dict[str, dict[str, Any]] = {"lsh": {"seed": 1}, "hnsw": {"seed": 1, "exact_below": 0}}


def warm_kernels(rows: int = 64, dim: int = 8) -> float:
    """Run every kernel once on a tiny index; returns the seconds it took."""
    started = time.perf_counter()
    vectors = np.random.default_rng(0).standard_normal((rows, dim)).astype(np.float32)
    ids = np.arange(rows, dtype=np.int64)
    mask = np.ones(rows, dtype=bool)
    mask[::2] = False
    for kind in KINDS:
        for metric in ("cosine", "l2", "dot"):
            index = create(kind, dim=dim, metric=metric, **_PARAMS.get(kind, {}))
            index.add(ids, vectors)
            index.search(vectors[0], 5)
            index.search(vectors[0], 5, mask=mask)
            index.search_batch(vectors[:3], 5)
            index.search_batch(vectors[:BATCH_ROWS], 5)  # the matrix-product path
            index.remove(ids[:4])
            index.search(vectors[1], 5)
    return time.perf_counter() - started


if __name__ == "__main__":  # python -m indexes.warmup: fill numba's cache at install time
    print(f"index kernels compiled and cached in {warm_kernels():.1f}s")  # noqa: T201
