"""HNSW one query per call (what a REST query does) against hnswlib, and the overhead.

    pip install hnswlib   # the reference, for the benchmark only
    python bench/hnsw_per_call.py [--rounds 3]

19,000 MiniLM vectors indexed by both (M=16, ef_construction=200, cosine),
1,000 held-out queries, one thread. For each ef, short rounds alternate
between the two: every query is its own call (``index.search(q, 10)`` and
``knn_query(q, k=10)``). Also prints the same queries as one batch call, so
the per-call overhead (Python, argument checks, dispatch) is the difference
between a call's time and its share of the batch.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")

import argparse  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import indexes  # noqa: E402

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "minilm-20k.npy"
K = 10
EFS = (16, 24, 32, 48, 64, 96)


def main() -> None:
    import hnswlib

    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    vectors = np.load(DATA).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    order = np.random.default_rng(0).permutation(len(vectors))
    base, queries = vectors[order[:-1000]], vectors[order[-1000:]]
    truth = np.argsort(-(queries @ base.T), axis=1)[:, :K]
    with threadpool_limits(1):
        ours = indexes.create("hnsw", dim=base.shape[1], metric="cosine", M=16,
                              ef_construction=200, seed=1)  # fmt: skip
        started = time.perf_counter()
        ours.add(np.arange(len(base)), base)
        ours_build = time.perf_counter() - started
        theirs = hnswlib.Index(space="cosine", dim=base.shape[1])
        theirs.init_index(max_elements=len(base), ef_construction=200, M=16, random_seed=1)
        theirs.set_num_threads(1)
        started = time.perf_counter()
        theirs.add_items(base, np.arange(len(base)))
        theirs_build = time.perf_counter() - started
        load = os.getloadavg()[0]
        print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python "
              f"{platform.python_version()}, numpy {np.__version__}; "
              f"load average {load:.2f}")  # fmt: skip
        print(f"build: shoal {ours_build:.2f}s, hnswlib {theirs_build:.2f}s, "
              f"ratio {ours_build / theirs_build:.2f}\n")  # fmt: skip
        print("| ef | shoal recall | hnswlib recall | shoal us/call | hnswlib us/call "
              "| shoal ÷ hnswlib (q/s) | shoal batch us/query | hnswlib batch us/query "
              "| batch: shoal ÷ hnswlib (q/s) | shoal overhead us/call |")  # fmt: skip
        print("|---|---|---|---|---|---|---|---|---|---|")
        for ef in EFS:
            theirs.set_ef(ef)
            ratios, ours_us, theirs_us, batch_us = [], [], [], []
            their_batch_us, batch_ratios = [], []
            for _ in range(args.rounds):
                started = time.perf_counter()
                found = [ours.search(q, K, ef=ef)[0] for q in queries]
                mine = time.perf_counter() - started
                started = time.perf_counter()
                labels = [theirs.knn_query(q, k=K)[0][0] for q in queries]
                other = time.perf_counter() - started
                started = time.perf_counter()
                ours.search_batch(queries, K, ef=ef)
                batch = time.perf_counter() - started
                started = time.perf_counter()
                theirs.knn_query(queries, k=K)
                their_batch = time.perf_counter() - started
                ratios.append(other / mine)
                batch_ratios.append(their_batch / batch)
                their_batch_us.append(1e6 * their_batch / len(queries))
                ours_us.append(1e6 * mine / len(queries))
                theirs_us.append(1e6 * other / len(queries))
                batch_us.append(1e6 * batch / len(queries))
            ours_recall = np.mean([len(set(f.tolist()) & set(t.tolist())) / K
                                   for f, t in zip(found, truth, strict=True)])  # fmt: skip
            theirs_recall = np.mean([len(set(f.tolist()) & set(t.tolist())) / K
                                     for f, t in zip(labels, truth, strict=True)])  # fmt: skip
            mine_us, batch_share = statistics.median(ours_us), statistics.median(batch_us)
            print(f"| {ef} | {ours_recall:.4f} | {theirs_recall:.4f} | {mine_us:.1f} "
                  f"| {statistics.median(theirs_us):.1f} | {statistics.median(ratios):.2f}x "
                  f"| {batch_share:.1f} | {statistics.median(their_batch_us):.1f} "
                  f"| {statistics.median(batch_ratios):.2f}x "
                  f"| {mine_us - batch_share:.1f} |")  # fmt: skip


if __name__ == "__main__":
    main()
