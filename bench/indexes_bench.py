"""Index benchmark: recall@10 against queries/s for every index, HNSW vs hnswlib.

    pip install hnswlib matplotlib   # references for the benchmark only
    python bench/indexes_bench.py [--out bench/recall_qps.png]

19,000 MiniLM vectors are indexed and the other 1,000 are the queries
(held out). Ground truth is exact cosine search. Everything runs on one
thread (BLAS limited to one thread, hnswlib with one thread) and the two HNSW
implementations are measured alternately in the same process. Prints
markdown tables and writes a recall-vs-queries/s plot.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")

import argparse  # noqa: E402
import platform  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import indexes  # noqa: E402

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "minilm-20k.npy"
K = 10
Curve = list[tuple[str, float, float]]  # (setting, recall, queries/s)


def load(path: Path) -> tuple[np.ndarray, np.ndarray]:
    vectors = np.load(path).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    order = np.random.default_rng(0).permutation(len(vectors))
    return vectors[order[:-1000]], vectors[order[-1000:]]


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(a) & set(b)) / K for a, b in zip(found, truth, strict=True)]))


def timed(run: Callable[[], np.ndarray], repeats: int = 3) -> tuple[np.ndarray, float]:
    best, result = float("inf"), None
    for _ in range(repeats):
        started = time.perf_counter()
        result = run()
        best = min(best, time.perf_counter() - started)
    assert result is not None
    return result, best


def qps_at(curve: Curve, target: float) -> float | None:
    """Queries/s at a recall, interpolated (log scale) between measured points."""
    points = sorted((r, q) for _, r, q in curve)
    for (r0, q0), (r1, q1) in zip(points, points[1:], strict=False):
        if r0 <= target <= r1 and r1 > r0:
            share = (target - r0) / (r1 - r0)
            return float(np.exp(np.log(q0) + share * (np.log(q1) - np.log(q0))))
    return None


def hnsw_section(base: np.ndarray, queries: np.ndarray, truth: np.ndarray) -> dict[str, Curve]:
    import hnswlib

    efs = [10, 16, 24, 32, 48, 64, 96, 128, 192]
    ours = indexes.create("hnsw", dim=base.shape[1], metric="cosine", M=16, ef_construction=200)
    ours.search_batch(base[:2], 1)  # compile (cached by numba after the first run)
    reference = hnswlib.Index(space="cosine", dim=base.shape[1])
    reference.init_index(max_elements=len(base), ef_construction=200, M=16, random_seed=1)
    reference.set_num_threads(1)
    builds: dict[str, list[float]] = {"shoal hnsw": [], "hnswlib": []}
    for _ in range(2):  # build twice each, alternating, keep the faster
        fresh = indexes.create(
            "hnsw", dim=base.shape[1], metric="cosine", M=16, ef_construction=200
        )
        started = time.perf_counter()
        fresh.add(np.arange(len(base)), base)
        builds["shoal hnsw"].append(time.perf_counter() - started)
        ours = fresh
        other = hnswlib.Index(space="cosine", dim=base.shape[1])
        other.init_index(max_elements=len(base), ef_construction=200, M=16, random_seed=1)
        other.set_num_threads(1)
        started = time.perf_counter()
        other.add_items(base, np.arange(len(base)))
        builds["hnswlib"].append(time.perf_counter() - started)
        reference = other
    with tempfile.TemporaryDirectory() as tmp:
        reference.save_index(f"{tmp}/ref.bin")
        reference_bytes = os.path.getsize(f"{tmp}/ref.bin")
    ours_bytes = ours.memory_bytes() + ours.store.nbytes()

    curves: dict[str, Curve] = {"shoal hnsw": [], "hnswlib": []}
    for ef in efs:
        reference.set_ef(ef)
        for _ in range(2):  # alternate, keep each one's best
            found, seconds = timed(lambda ef=ef: ours.search_batch(queries, K, ef=ef)[0])
            mine = (recall(found, truth), len(queries) / seconds)
            labels, seconds = timed(lambda: reference.knn_query(queries, k=K)[0])
            theirs = (recall(labels, truth), len(queries) / seconds)
        curves["shoal hnsw"].append((f"ef={ef}", *mine))
        curves["hnswlib"].append((f"ef={ef}", *theirs))

    print("\n### HNSW (M=16, ef_construction=200), one thread\n")
    print("| ef | shoal recall@10 | shoal q/s | hnswlib recall@10 | hnswlib q/s |")
    print("|---|---|---|---|---|")
    for (setting, r1, q1), (_, r2, q2) in zip(curves["shoal hnsw"], curves["hnswlib"], strict=True):
        print(f"| {setting[3:]} | {r1:.4f} | {q1:,.0f} | {r2:.4f} | {q2:,.0f} |")
    print("\n| measure | shoal hnsw | hnswlib | ratio |")
    print("|---|---|---|---|")
    for target in (0.90, 0.95, 0.98):
        mine_qps = qps_at(curves["shoal hnsw"], target)
        their_qps = qps_at(curves["hnswlib"], target)
        if mine_qps and their_qps:
            print(
                f"| q/s at recall {target:.2f} | {mine_qps:,.0f} | {their_qps:,.0f} | "
                f"{mine_qps / their_qps:.2f} |"
            )
    b1, b2 = min(builds["shoal hnsw"]), min(builds["hnswlib"])
    print(f"| build seconds | {b1:.2f} | {b2:.2f} | {b1 / b2:.2f} |")
    print(
        f"| memory MB (vectors + graph) | {ours_bytes / 1e6:.1f} | {reference_bytes / 1e6:.1f} "
        f"| {ours_bytes / reference_bytes:.2f} |"
    )
    return curves


def other_section(
    base: np.ndarray,
    queries: np.ndarray,
    truth: np.ndarray,
    kinds: dict[str, list[dict[str, object]]],
) -> dict[str, Curve]:
    curves: dict[str, Curve] = {}
    print("\n### Other indexes, one thread\n")
    print("| index | build s | search setting | recall@10 | q/s |")
    print("|---|---|---|---|---|")
    for kind, settings in kinds.items():
        index = indexes.create(kind, dim=base.shape[1], metric="cosine")
        started = time.perf_counter()
        index.add(np.arange(len(base)), base)
        build = time.perf_counter() - started
        curves[kind] = []
        for params in settings:
            index.search_batch(queries[:5], K, **params)
            found, seconds = timed(
                lambda i=index, p=params: i.search_batch(queries, K, **p)[0], repeats=2
            )
            label = ", ".join(f"{k}={v}" for k, v in params.items()) or "exact"
            curves[kind].append((label, recall(found, truth), len(queries) / seconds))
            print(
                f"| {kind} | {build:.2f} | {label} | {curves[kind][-1][1]:.4f} | "
                f"{curves[kind][-1][2]:,.0f} |"
            )
    return curves


def plot(curves: dict[str, Curve], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(8, 5.5))
    for name, curve in curves.items():
        points = sorted((r, q) for _, r, q in curve)
        axes.plot([r for r, _ in points], [q for _, q in points], marker="o", label=name)
    axes.set_xlabel("recall@10")
    axes.set_ylabel("queries per second (one thread, log scale)")
    axes.set_yscale("log")
    axes.set_title("19,000 MiniLM vectors (384-d, cosine), 1,000 held-out queries")
    axes.grid(True, which="both", alpha=0.3)
    axes.legend()
    figure.tight_layout()
    figure.savefig(out, dpi=110)
    print(f"\nplot written to {out}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("recall_qps.png"))
    parser.add_argument("--only-hnsw", action="store_true")
    args = parser.parse_args()
    base, queries = load(args.data)
    truth = np.argsort(-(queries @ base.T), axis=1)[:, :K]
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}, numpy {np.__version__}"
    )
    with threadpool_limits(1):
        curves = hnsw_section(base, queries, truth)
        if not args.only_hnsw:
            kinds: dict[str, list[dict[str, object]]] = {"brute_force": [{}]}
            for kind, settings in (
                ("lsh", [{"probes": p} for p in (0, 4, 16, 64, 128)]),
                ("kd_tree", [{}]),
            ):
                if kind in indexes.KINDS:
                    kinds[kind] = settings
            curves.update(other_section(base, queries, truth, kinds))
    plot(curves, args.out)


if __name__ == "__main__":
    main()
