"""Index kernels release the GIL.

The applier inserts into indexes on its own thread, and searches run on
worker threads, while the event loop that sends Raft heartbeats needs the
GIL too. A kernel that held it would stop the loop for the whole insert and
keep searches on one core.
"""

from __future__ import annotations

import threading
import time
from types import ModuleType

import numpy as np
import pytest
from numba.core.registry import CPUDispatcher

import indexes
from indexes import hnsw_kernels, kd_kernels, kernels, lsh_kernels


@pytest.mark.parametrize("module", [hnsw_kernels, kd_kernels, kernels, lsh_kernels])
def test_every_kernel_is_compiled_without_the_gil(module: ModuleType) -> None:
    dispatchers = {
        name: value for name, value in vars(module).items() if isinstance(value, CPUDispatcher)
    }
    assert dispatchers, f"{module.__name__} has no numba kernels"
    holding = sorted(n for n, d in dispatchers.items() if not d.targetoptions.get("nogil"))
    assert not holding, f"kernels that hold the GIL in {module.__name__}: {holding}"


def test_a_long_hnsw_insert_leaves_other_threads_running() -> None:
    rng = np.random.default_rng(3)
    vectors = rng.standard_normal((6000, 64)).astype(np.float32)
    warm = indexes.create("hnsw", dim=64, metric="cosine", M=16, ef_construction=200, seed=1)
    warm.add(np.arange(50, dtype=np.int64), vectors[:50])  # compile before timing
    index = indexes.create("hnsw", dim=64, metric="cosine", M=16, ef_construction=200, seed=1)
    done = threading.Event()

    def build() -> None:
        index.add(np.arange(len(vectors), dtype=np.int64), vectors)
        done.set()

    builder = threading.Thread(target=build)
    started = time.perf_counter()
    builder.start()
    gaps: list[float] = []
    last = time.perf_counter()
    while not done.is_set() and time.perf_counter() - started < 120:
        time.sleep(0.002)
        now = time.perf_counter()
        gaps.append(now - last)
        last = now
    builder.join(120)
    took = time.perf_counter() - started
    assert took > 0.3, f"the build took {took:.2f}s, too short to tell"
    # Holding the GIL, the build would leave one gap as long as itself.
    assert max(gaps) < min(0.25, took / 3), f"longest gap {max(gaps):.3f}s in a {took:.2f}s build"
