"""Replicas on different CPUs must build the same index from the same log.

Runs tests/determinism_probe.py twice, each with an empty numba cache (so no
machine code compiled for another CPU is reused): once with numba generating
code for a generic CPU of this architecture (on x86-64: SSE2, no AVX, no FMA),
numpy's runtime-dispatched SIMD loops switched off and OpenBLAS pinned to an
SSE-only kernel; once for this machine's own CPU. The state digests of every
index must match.
"""

from __future__ import annotations

import importlib
import json
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

import numba
import numpy as np
import pytest

from indexes import hnsw_kernels

ROOT = Path(__file__).resolve().parents[2]
# Variables that choose code paths by CPU; the host run must not inherit them.
_CPU_VARIABLES = (
    "NUMBA_CPU_NAME",
    "NUMBA_CPU_FEATURES",
    "NPY_DISABLE_CPU_FEATURES",
    "NPY_ENABLE_CPU_FEATURES",
    "OPENBLAS_CORETYPE",
)


def _narrow_environment() -> dict[str, str]:
    """Settings that make this process compute as the oldest CPU of its kind."""
    umath = importlib.import_module("numpy._core._multiarray_umath")
    numpy_dispatch = [
        feature for feature in umath.__cpu_dispatch__ if umath.__cpu_features__.get(feature)
    ]
    narrow = {"NUMBA_CPU_NAME": "generic", "NUMBA_CPU_FEATURES": ""}
    if numpy_dispatch:
        narrow["NPY_DISABLE_CPU_FEATURES"] = " ".join(numpy_dispatch)
    if platform.machine() in ("x86_64", "AMD64"):
        narrow["OPENBLAS_CORETYPE"] = "Nehalem"
    return narrow


def _start(cache: Path, extra: dict[str, str]) -> subprocess.Popen[str]:
    env = {key: value for key, value in os.environ.items() if key not in _CPU_VARIABLES}
    env.update(extra, NUMBA_CACHE_DIR=str(cache), PYTHONPATH=str(ROOT))
    return subprocess.Popen(
        [sys.executable, "-m", "tests.determinism_probe"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _report(process: subprocess.Popen[str]) -> dict[str, Any]:
    try:
        out, err = process.communicate(timeout=240)
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate()
        raise
    assert process.returncode == 0, err[-3000:]
    report: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return report


@pytest.mark.timeout(300)
def test_same_log_builds_same_indexes_on_a_generic_and_the_host_cpu(tmp_path: Path) -> None:
    # Both at once: two cores, and most of the time is numba compiling.
    narrow = _start(tmp_path / "generic-cache", _narrow_environment())
    host = _start(tmp_path / "host-cache", {})
    generic_report, host_report = _report(narrow), _report(host)

    generic_codegen = generic_report.pop("codegen")
    host_codegen = host_report.pop("codegen")
    assert sorted(generic_report) == sorted(host_report)
    differing = [
        f"{workload} {part}"
        for workload, parts in sorted(generic_report.items())
        for part, digest in sorted(parts.items())
        if host_report[workload][part] != digest
    ]
    assert not differing, f"digests differ between CPUs: {differing}"

    assert generic_codegen["cpu"] == "generic" and host_codegen["cpu"] == "host"
    for codegen in (generic_codegen, host_codegen):
        # The scan finds fast-math flags where they are, and finds none in
        # the kernels that build the graph.
        assert codegen["fast_flags_in_a_fastmath_probe"] > 0
        assert {"insert_batch", "repair"} <= set(codegen["build_kernels"])
        assert codegen["build_kernels"] == dict.fromkeys(codegen["build_kernels"], 0)


def _written_order_dot(row: np.ndarray, vector: np.ndarray) -> np.float32:
    """fixed_dot's order, one float32 rounding at a time, in plain Python."""
    lanes = hnsw_kernels.DOT_LANES
    full = len(vector) - len(vector) % lanes
    sums = [np.float32(0.0)] * lanes
    for start in range(0, full, lanes):
        for lane in range(lanes):
            product = np.float32(row[start + lane] * vector[start + lane])
            sums[lane] = np.float32(sums[lane] + product)
    while len(sums) > 1:
        sums = [np.float32(sums[k] + sums[k + 1]) for k in range(0, len(sums), 2)]
    total = sums[0]
    for j in range(full, len(vector)):
        total = np.float32(total + np.float32(row[j] * vector[j]))
    return total


@numba.njit
def _fixed_dot(matrix: np.ndarray, row: int, vector: np.ndarray) -> float:
    result: float = hnsw_kernels.fixed_dot(matrix, row, vector)
    return result


@pytest.mark.parametrize("dim", [1, 7, 16, 17, 37, 128, 385])
def test_fixed_dot_sums_in_the_written_order(dim: int) -> None:
    rng = np.random.default_rng(dim)
    matrix = (rng.normal(0, 1, (3, dim)) * rng.uniform(0.01, 100, dim)).astype(np.float32)
    got = _fixed_dot(matrix, 2, matrix[0])
    assert np.float32(got).tobytes() == _written_order_dot(matrix[2], matrix[0]).tobytes()
