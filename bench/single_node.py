"""Single-node benchmark: ingest rate, query latency over HTTP, exact batch search.

    python bench/single_node.py [--data ../shared/data/minilm-20k.npy]

Starts real node processes on loopback (one per fsync policy), ingests the
20k MiniLM vectors in documents of 100 chunks from 4 client threads, then
measures query latency from one client. The exact batch search rate is a
ratio to faiss-cpu IndexFlatIP measured in this same process, alternating
runs so both see the same machine load. Prints markdown tables.
"""

from __future__ import annotations

import os

# As the node does (node/cli.py); faiss's own OpenBLAS is an OpenMP build that
# ignores this setting.
os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")

import argparse
import json
import platform
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from indexes import create  # noqa: E402
from tests.harness import NodeProcess  # noqa: E402

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "minilm-20k.npy"
DOC_CHUNKS = 100
CLIENTS = 4


def load(path: Path) -> np.ndarray:
    vectors = np.load(path).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors


def ingest(node: NodeProcess, library_id: str, vectors: np.ndarray) -> float:
    """Chunks per second, CLIENTS threads posting documents of DOC_CHUNKS chunks."""
    batches = [vectors[i : i + DOC_CHUNKS] for i in range(0, len(vectors), DOC_CHUNKS)]
    # Encoded before the clock starts: the client's JSON encoding is not the
    # server's ingest rate (json.dumps of 100 x 384 floats takes ~18 ms).
    bodies = [
        json.dumps(
            {
                "metadata": {"title": f"doc {n}", "tags": [f"t{n % 10}"]},
                "chunks": [
                    {
                        "text": f"chunk {n}-{c}",
                        "embedding": v.tolist(),
                        "metadata": {"page_number": c},
                    }
                    for c, v in enumerate(batch)
                ],
            }
        ).encode()
        for n, batch in enumerate(batches)
    ]
    cursor = iter(range(len(bodies)))
    lock = threading.Lock()
    failures: list[str] = []

    def work() -> None:
        with httpx.Client(base_url=node.url, timeout=120) as client:
            while True:
                with lock:
                    n = next(cursor, None)
                if n is None:
                    return
                response = client.post(
                    f"/libraries/{library_id}/documents",
                    content=bodies[n],
                    headers={"content-type": "application/json"},
                )
                if response.status_code != 201:
                    failures.append(response.text)

    started = time.perf_counter()
    threads = [threading.Thread(target=work) for _ in range(CLIENTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    if failures:
        raise RuntimeError(failures[0])
    return len(vectors) / elapsed


def latencies(
    node: NodeProcess, library_id: str, queries: np.ndarray, filters: dict[str, Any] | None
) -> list[float]:
    out = []
    with httpx.Client(base_url=node.url, timeout=60) as client:
        for q in queries:
            body: dict[str, Any] = {"query_embedding": q.tolist(), "k": 10}
            if filters:
                body["filters"] = filters
            started = time.perf_counter()
            response = client.post(f"/libraries/{library_id}/query", json=body)
            out.append(time.perf_counter() - started)
            assert response.status_code == 200 and len(response.json()["results"]) == 10
    return out


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))] * 1000


def http_section(vectors: np.ndarray, queries: np.ndarray) -> None:
    print("\n### Ingest over HTTP (384-d, documents of 100 chunks, 4 clients)\n")
    print("| fsync | chunks/s |")
    print("|---|---|")
    node_for_queries = None
    with tempfile.TemporaryDirectory() as tmp:
        for policy in ("always", "batch"):
            node = NodeProcess(Path(tmp) / policy, "--fsync", policy, "--log-level", "warning")
            node.start()
            with node.client() as client:
                library_id = client.post(
                    "/libraries", json={"name": "bench", "dimension": 384}
                ).json()["id"]
            rate = ingest(node, library_id, vectors)
            print(f"| {policy} | {rate:,.0f} |")
            if policy == "always":
                node_for_queries = (node, library_id)
            else:
                node.stop()
        assert node_for_queries is not None
        node, library_id = node_for_queries
        latencies(node, library_id, queries[:50], None)  # warm up
        plain = latencies(node, library_id, queries, None)
        filtered = latencies(
            node, library_id, queries, {"field": "tags", "op": "contains_any", "value": ["t3"]}
        )
        node.stop()
    print(
        f"\n### Query latency over HTTP ({len(vectors):,} vectors, k=10, one client, "
        f"{len(queries)} queries)\n"
    )
    print("| query | p50 ms | p99 ms |")
    print("|---|---|---|")
    print(f"| unfiltered | {pct(plain, 50):.2f} | {pct(plain, 99):.2f} |")
    print(
        f"| filter: tags contains_any (10% of rows) | {pct(filtered, 50):.2f} | "
        f"{pct(filtered, 99):.2f} |"
    )


def batch_section(vectors: np.ndarray, queries: np.ndarray, rounds: int) -> None:
    import faiss

    reference = faiss.IndexFlatIP(vectors.shape[1])
    reference.add(vectors)
    ours = {
        metric: create("brute_force", dim=vectors.shape[1], metric=metric)
        for metric in ("dot", "cosine")
    }
    for index in ours.values():
        index.add(np.arange(len(vectors)), vectors)
    k = 10
    runs = {
        "faiss IndexFlatIP": lambda: reference.search(queries, k),
        "shoal brute_force dot": lambda: ours["dot"].search_batch(queries, k),
        "shoal brute_force cosine": lambda: ours["cosine"].search_batch(queries, k),
    }
    for run in runs.values():
        run()  # warm up (numba compiles or loads its cache)
    rates: dict[str, list[float]] = {name: [] for name in runs}
    # Rounds alternate so every index sees the same machine load; within a
    # round each index runs three times back to back and keeps its best, so
    # no index is timed while the previous library's threads still spin.
    for _ in range(rounds):
        for name, run in runs.items():
            times = []
            for _ in range(3):
                started = time.perf_counter()
                run()
                times.append(time.perf_counter() - started)
            rates[name].append(len(queries) / min(times))
    ids, _ = ours["dot"].search_batch(queries, k)
    _, ref_ids = reference.search(queries, k)
    agreement = float(
        np.mean([len(set(a) & set(b)) / k for a, b in zip(ids, ref_ids, strict=True)])
    )
    print(
        f"\n### Exact batch search, in process ({len(vectors):,} x {vectors.shape[1]}, "
        f"{len(queries)} queries, k={k}, {rounds} alternating rounds, best of 3 runs each)\n"
    )
    print("| index | median queries/s | best queries/s | median of per-round ratios to faiss |")
    print("|---|---|---|---|")
    base = rates["faiss IndexFlatIP"]
    for name, values in rates.items():
        ratios = [value / ref for value, ref in zip(values, base, strict=True)]
        print(
            f"| {name} | {statistics.median(values):,.0f} | {max(values):,.0f} | "
            f"{statistics.median(ratios):.2f} |"
        )
    print(f"\nresult agreement with faiss: {agreement:.4f}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--skip-http", action="store_true")
    args = parser.parse_args()
    vectors = load(args.data)
    rng = np.random.default_rng(0)
    queries = vectors[rng.choice(len(vectors), args.queries, replace=False)]
    queries = queries + rng.normal(0, 0.02, queries.shape).astype(np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, "
        f"{platform.python_implementation()} {platform.python_version()}, numpy {np.__version__}"
    )
    batch_section(vectors, queries, args.rounds)
    if not args.skip_http:
        http_section(vectors, queries[:500])


if __name__ == "__main__":
    main()
