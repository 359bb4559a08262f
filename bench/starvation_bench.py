"""Does anything starve the Raft loop? A big HNSW ingest into 3 nodes, with queries.

    python bench/starvation_bench.py [--rows 100000] [--batch 500]

Three node processes on loopback (this machine's 2 cores for everything).
One HNSW library (384-d, M=16, ef_construction=100) takes ``rows`` vectors
in documents of ``batch`` chunks from 2 writer threads. Meanwhile 2 threads
query a follower (k=10). The vectors are the 20,000 MiniLM ones, repeated
with a little noise (renormalised) to reach ``rows``.

Prints: ingest rate, leader changes (terms), writes that had to be retried
(503/307/timeouts), query latency, and from /metrics each follower's gaps
between messages from the leader (p50/p99/max bucket) and the leader's
Raft loop lag. The heartbeat interval is 0.15 s; the issue's bar is zero
leader changes and a gap p99 at or under three intervals (0.45 s).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.cluster_harness import ClusterProcesses  # noqa: E402

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "minilm-20k.npy"
HEARTBEAT = 0.15


def vectors_for(rows: int) -> np.ndarray:
    base = np.load(DATA).astype(np.float32)
    rng = np.random.default_rng(7)
    parts = [base]
    while sum(len(p) for p in parts) < rows:
        noisy = base + rng.normal(0, 0.02, base.shape).astype(np.float32)
        parts.append(noisy)
    out = np.concatenate(parts)[:rows]
    out /= np.linalg.norm(out, axis=1, keepdims=True)
    return out


def histogram(url: str, name: str) -> dict[float, float]:
    text = httpx.get(url + "/metrics", timeout=30).text
    found = re.findall(rf'^{name}_bucket{{le="([^"]+)"}} ([0-9.e+]+)$', text, re.M)
    return {float("inf") if bound == "+Inf" else float(bound): float(n) for bound, n in found}


def quantile(buckets: dict[float, float], q: float) -> float:
    """The upper bound of the bucket holding quantile ``q`` (cumulative counts)."""
    total = buckets[float("inf")]
    for bound in sorted(buckets):
        if buckets[bound] >= q * total:
            return bound
    return float("inf")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=500)
    args = parser.parse_args()
    vectors = vectors_for(args.rows)
    root = Path(tempfile.mkdtemp(prefix="starvation-"))
    cluster = ClusterProcesses(root, 3, "--log-level", "warning").start()
    try:
        leader = cluster.leader()
        term = cluster.status(leader)["term"]  # type: ignore[index]
        with cluster.client(leader) as api:
            library = api.post("/libraries", json={
                "name": "big", "dimension": 384, "index_type": "hnsw",
                "index_params": {"M": 16, "ef_construction": 100}}).json()["id"]  # fmt: skip
        bodies = [json.dumps({"chunks": [{"text": f"v{i + n}", "embedding": v.tolist()}
                                         for n, v in enumerate(vectors[i : i + args.batch])]})
                  for i in range(0, len(vectors), args.batch)]  # fmt: skip
        retried = {"count": 0}
        cursor = iter(range(len(bodies)))
        lock = threading.Lock()
        stop = threading.Event()
        latencies: list[float] = []
        failed_queries = {"count": 0}

        def writer() -> None:
            while True:
                with lock:
                    n = next(cursor, None)
                if n is None:
                    return
                while True:
                    target = cluster.leader(timeout=60)
                    key = {"Idempotency-Key": f"batch-{n}", "content-type": "application/json"}
                    try:
                        answer = httpx.post(f"{cluster.nodes[target].url}/libraries/{library}"
                                            "/documents", content=bodies[n], headers=key,
                                            timeout=120)  # fmt: skip
                    except httpx.HTTPError:
                        answer = None
                    if answer is not None and answer.status_code == 201:
                        break
                    with lock:
                        retried["count"] += 1
                    time.sleep(0.2)

        def reader() -> None:
            follower = cluster.followers()[0]
            rng = np.random.default_rng(threading.get_ident() % 1000)
            with httpx.Client(base_url=cluster.nodes[follower].url, timeout=30) as client:
                while not stop.is_set():
                    query = vectors[int(rng.integers(len(vectors)))].tolist()
                    started = time.perf_counter()
                    try:
                        answer = client.post(f"/libraries/{library}/query",
                                             json={"query_embedding": query, "k": 10})  # fmt: skip
                        ok = answer.status_code == 200
                    except httpx.HTTPError:
                        ok = False
                    if ok:
                        latencies.append(time.perf_counter() - started)
                    else:
                        failed_queries["count"] += 1
                        time.sleep(0.1)

        started = time.perf_counter()
        writers = [threading.Thread(target=writer) for _ in range(2)]
        readers = [threading.Thread(target=reader) for _ in range(2)]
        for thread in writers + readers:
            thread.start()
        for thread in writers:
            thread.join()
        took = time.perf_counter() - started
        stop.set()
        for thread in readers:
            thread.join(60)
        cluster.converged(timeout=300)
        final_leader = cluster.leader()
        final_term = cluster.status(final_leader)["term"]  # type: ignore[index]
        print(f"Machine: {platform.machine()}, {os.cpu_count()} cores, load average "
              f"{os.getloadavg()[0]:.2f}; {args.rows:,} x 384-d vectors in documents of "
              f"{args.batch}, 2 writers, 2 readers on a follower\n")  # fmt: skip
        print("| measure | value |")
        print("|---|---|")
        print(f"| ingest | {args.rows / took:,.0f} vectors/s ({took:.0f} s) |")
        print(f"| leader changes (term {term} -> {final_term}) | {final_term - term} |")
        print(f"| writes retried (503, 307 or timeout) | {retried['count']} |")
        if latencies:
            ordered = sorted(latencies)
            p99 = ordered[int(0.99 * (len(ordered) - 1))]
            print(f"| queries on a follower meanwhile | {len(latencies):,}, p50 "
                  f"{1000 * statistics.median(ordered):.0f} ms, p99 {1000 * p99:.0f} ms, "
                  f"{failed_queries['count']} failed |")  # fmt: skip
        for node_id in cluster.running():
            url = cluster.nodes[node_id].url
            if node_id != final_leader:
                gaps = histogram(url, "shoal_raft_leader_gap_seconds")
                print(f"| {node_id}: gap between leader messages, p50 / p99 / largest bucket "
                      f"| <= {quantile(gaps, 0.5)} / <= {quantile(gaps, 0.99)} / "
                      f"<= {quantile(gaps, 1.0)} s ({gaps[float('inf')]:.0f} gaps) |")  # fmt: skip
            lag = histogram(url, "shoal_raft_loop_lag_seconds")
            print(f"| {node_id}: Raft loop tick lag, p99 / largest bucket | <= "
                  f"{quantile(lag, 0.99)} / <= {quantile(lag, 1.0)} s |")  # fmt: skip
    finally:
        cluster.stop()


if __name__ == "__main__":
    main()
