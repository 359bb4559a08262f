"""Apply a fixed sequence of adds and removes to indexes and print digests.

Run as ``python -m tests.determinism_probe [--answers]``. Prints one JSON
object: for each workload, the sha256 of the index's ``state()`` and of the
structure that ``state()`` leaves out but searches walk (LSH keys, the
KD-tree's boxes). With ``--answers`` it also hashes the ids that searches
return (search kernels may use fastmath, so these are informational).

tests/unit/test_determinism.py runs this in two processes, one with numba
generating code for a generic x86-64 CPU and numpy's and OpenBLAS's wider
SIMD paths switched off, and asserts the digests are equal.
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
from typing import Any

import numba
import numpy as np
from numba.core import config

import indexes
from indexes import hnsw_kernels

# (kind, metric, dim, seed): dimensions not a multiple of 8 as well, so that
# differing vector widths leave differing tails.
WORKLOADS: list[tuple[str, str, int, int]] = [
    ("hnsw", "cosine", 32, 1),
    ("hnsw", "l2", 37, 2),
    ("hnsw", "dot", 19, 3),
    ("lsh", "cosine", 37, 4),
    ("kd_tree", "cosine", 12, 5),
    ("kd_tree", "l2", 13, 6),
]


def _encode(value: Any, digest: Any) -> None:
    """A canonical byte stream of nested dicts, lists, bytes and scalars."""
    if isinstance(value, dict):
        digest.update(b"{")
        for key in sorted(value):
            digest.update(repr(key).encode() + b":")
            _encode(value[key], digest)
        digest.update(b"}")
    elif isinstance(value, list | tuple):
        digest.update(b"[")
        for item in value:
            _encode(item, digest)
        digest.update(b"]")
    elif isinstance(value, bytes):
        digest.update(b"b%d:" % len(value) + value)
    elif isinstance(value, np.ndarray):
        digest.update(f"a{value.dtype.str}{value.shape}:".encode())
        digest.update(np.ascontiguousarray(value).tobytes())
    else:
        digest.update(repr(value).encode() + b";")


def sha(value: Any) -> str:
    digest = hashlib.sha256()
    _encode(value, digest)
    return digest.hexdigest()


def vectors(rng: np.random.Generator, count: int, dim: int) -> np.ndarray:
    """Gaussian points around a few centres; a quarter of them are near-duplicates
    of others (each coordinate a few ulps away), as re-embedded texts are. Their
    distances to anything differ by about a rounding error, so the order of
    a sum decides which one looks nearer."""
    centres = rng.normal(0.0, 1.0, (8, dim))
    points = centres[rng.integers(0, 8, count)] + rng.normal(0.0, 0.5, (count, dim))
    points = points.astype(np.float32)
    copies = rng.choice(count, count // 4, replace=False)
    sources = rng.integers(0, count, len(copies))
    nudge = rng.integers(-3, 4, (len(copies), dim)).astype(np.float32)
    points[copies] = points[sources] * (1 + nudge * np.float32(2.0**-23))
    return points


def run(kind: str, metric: str, dim: int, seed: int, answers: bool) -> dict[str, str]:
    rng = np.random.default_rng(seed)
    params: dict[str, Any] = {"seed": 11} if kind in indexes.SEEDED else {}
    index: Any = indexes.create(kind, dim=dim, metric=metric, **params)
    first = vectors(rng, 3000, dim)
    for start in range(0, 3000, 750):  # batches: entry point and levels carry over
        index.add(np.arange(start, start + 750), first[start : start + 750])
    gone = rng.choice(3000, 450, replace=False)
    index.remove(gone)  # past HNSW's repair threshold
    # Some removed ids come back, some live ones are overwritten, some are new.
    again = np.concatenate(
        [gone[:150], rng.choice(3000, 100, replace=False), 3000 + np.arange(500)]
    )
    again = np.unique(again)
    index.add(again, vectors(rng, len(again), dim))
    index.remove(rng.choice(3500, 60, replace=False))  # tombstones left unrepaired
    index.add(3500 + np.arange(200), vectors(rng, 200, dim))
    out = {"state": sha(index.state())}
    if kind == "lsh":
        out["structure"] = sha([index.keys[index.hashed], index.bits, index.center])
    elif kind == "kd_tree":
        out["structure"] = sha([index.lo, index.hi, index.left, index.right, index.order])
    if answers:
        found, _ = index.search_batch(vectors(rng, 200, dim), 10)
        out["answers"] = sha(found)
    return out


# A float instruction carrying a fast-math flag, in LLVM's textual IR.
_FAST = re.compile(
    r"= (?:fadd|fsub|fmul|fdiv|frem|fneg|fcmp|call)\b[^\n]*?"
    r"\b(?:fast|reassoc|contract|nnan|ninf|nsz|arcp|afn)\b|llvm\.fmuladd"
)


def fast_math_flags(dispatcher: Any) -> int:
    """How many float instructions of the compiled code may be rewritten."""
    return sum(len(_FAST.findall(ir)) for ir in dispatcher.inspect_llvm().values())


def codegen() -> dict[str, Any]:
    """What this process compiled for, and the fast-math flags in the HNSW
    kernels it compiled that are not search-only (there must be none)."""

    @numba.njit(fastmath=True)
    def probe(values: np.ndarray) -> float:
        total = 0.0
        for value in values:
            total += value
        return total

    probe(np.ones(3))
    build = {
        name: fast_math_flags(value)
        for name, value in vars(hnsw_kernels).items()
        if isinstance(value, numba.core.registry.CPUDispatcher)
        and value.signatures
        and not value.targetoptions.get("fastmath")
    }
    return {
        "cpu": vars(config).get("CPU_NAME") or "host",
        "build_kernels": build,
        "fast_flags_in_a_fastmath_probe": fast_math_flags(probe),
    }


def main(argv: list[str]) -> None:
    answers = "--answers" in argv
    report: dict[str, Any] = {
        f"{kind}-{metric}-d{dim}-s{seed}": run(kind, metric, dim, seed, answers)
        for kind, metric, dim, seed in WORKLOADS
    }
    report["codegen"] = codegen()
    print(json.dumps(report, sort_keys=True))


if __name__ == "__main__":
    main(sys.argv[1:])
