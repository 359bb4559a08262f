"""Warm-up covers every kernel signature a request reaches.

The node runs :func:`indexes.warmup.warm_kernels` before it says ready, so the
first query after a start costs no compilation. If a request reached a
signature the warm-up did not (a different dtype, a path only large indexes
take), numba would compile it inside that request. Checked in a fresh
interpreter: kernels other tests compiled must not hide a gap.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent(
    """
    import importlib, pkgutil
    import numpy as np
    import indexes
    from indexes import KINDS, create
    from indexes.warmup import warm_kernels

    def dispatchers():
        found = {}
        for info in pkgutil.iter_modules(indexes.__path__):
            module = importlib.import_module(f"indexes.{info.name}")
            for name, value in vars(module).items():
                if hasattr(value, "signatures") and hasattr(value, "py_func"):
                    found[f"{info.name}.{name}"] = value
        return found

    warm_kernels()
    before = {name: len(d.signatures) for name, d in dispatchers().items()}
    rng = np.random.default_rng(5)
    vectors = rng.standard_normal((3000, 384)).astype(np.float32)
    ids = np.arange(len(vectors), dtype=np.int64)
    mask = rng.random(len(vectors)) < 0.3
    params = {"lsh": {"seed": 2}, "hnsw": {"seed": 2, "M": 8, "ef_construction": 40}}
    for kind in KINDS:
        for metric in ("cosine", "l2", "dot"):
            index = create(kind, dim=384, metric=metric, **params.get(kind, {}))
            index.add(ids[:2000], vectors[:2000])
            index.add(ids[2000:], vectors[2000:])
            index.search(vectors[1], 10)
            index.search(vectors[2], 10, mask=mask)
            index.search_batch(vectors[:3], 10)
            index.search_batch(vectors[:80], 10, mask=mask)
            index.remove(ids[:100])
            index.search(vectors[3], 10)
    after = {name: len(d.signatures) for name, d in dispatchers().items()}
    grown = {name: (before[name], after[name]) for name in after if after[name] != before[name]}
    print(len(before), grown)
    """
)


def test_requests_after_warm_up_compile_nothing() -> None:
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=600, check=True
    )
    count, grown = result.stdout.strip().split(" ", 1)
    assert int(count) >= 10, "no numba kernels found: the check would prove nothing"
    assert grown == "{}", f"kernels compiled after warm-up (signatures before, after): {grown}"
