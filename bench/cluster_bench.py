"""Cluster benchmark: failover time, replicated ingest, follower read scaling.

    python bench/cluster_bench.py [--drills 25]

Real node processes on loopback (this machine: 2 cores for everything,
clients included). Prints markdown tables.

- Failover: a writer keeps writing; the leader is killed with SIGKILL; the
  time from the kill to the first acknowledged write (invoked after the
  kill) is one sample. The killed node is restarted and the cluster allowed
  to converge before the next drill. Election timeout 1 s (randomised 1-2 s).
- Ingest: the same 10,000 MiniLM vectors, documents of 100 chunks, 4 client
  threads, into one node and into a 3-node cluster (fsync always), three
  times each, alternating; medians.
- Reads: 4 client processes (2 threads each) send k=10 queries for a fixed
  time, all to the leader, then spread over the two followers.
"""

from __future__ import annotations

import argparse
import json
import os
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

from tests.cluster_harness import ClusterProcesses  # noqa: E402
from tests.harness import NodeProcess  # noqa: E402

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "minilm-20k.npy"


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


class Writer:
    """Writes continuously, moving to another node whenever one fails."""

    def __init__(self, cluster: ClusterProcesses, library_id: str) -> None:
        self.cluster, self.library_id = cluster, library_id
        self.acks: list[tuple[float, float, str]] = []  # (invoked, completed, node)
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> Writer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)

    def first_ack_after(self, moment: float, not_by: str | None = None) -> float | None:
        """When the first write invoked at or after ``moment`` was acknowledged
        (by a node other than ``not_by``, when given)."""
        with self._lock:
            done = [end for start, end, node in self.acks if start >= moment and node != not_by]
        return min(done) if done else None

    def _run(self) -> None:
        nodes = list(self.cluster.nodes)
        target, n = nodes[0], 0
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                response = httpx.patch(
                    f"{self.cluster.nodes[target].url}/libraries/{self.library_id}",
                    json={"description": f"w{n}"}, timeout=3.0,
                )  # fmt: skip
            except httpx.HTTPError:
                target = nodes[(nodes.index(target) + 1) % len(nodes)]
                continue
            n += 1
            if response.status_code == 200:
                with self._lock:
                    self.acks.append((started, time.monotonic(), target))
            elif response.status_code == 307:
                target = response.json().get("leader_id") or target
            else:
                target = nodes[(nodes.index(target) + 1) % len(nodes)]
                time.sleep(0.02)


def failover(drills: int, root: Path) -> list[float]:
    cluster = ClusterProcesses(root / "failover", 3, "--log-level", "warning").start()
    samples = []
    try:
        with cluster.client(cluster.leader()) as api:
            library_id = api.post("/libraries", json={"name": "failover"}).json()["id"]
        writer = Writer(cluster, library_id).start()
        for _ in range(drills):
            time.sleep(1.0)
            leader = cluster.leader(timeout=30)
            killed_at = time.monotonic()
            cluster.kill(leader)
            deadline = killed_at + 30
            while writer.first_ack_after(killed_at) is None and time.monotonic() < deadline:
                time.sleep(0.01)
            first = writer.first_ack_after(killed_at)
            samples.append((first or float("inf")) - killed_at)
            cluster.restart(leader, wait=True)  # ready: it knows the leader, caught up
        writer.stop()
        cluster.converged(timeout=60)
    finally:
        cluster.stop()
    return samples


def ingest_bodies(vectors: np.ndarray) -> list[bytes]:
    return [
        json.dumps({"chunks": [{"text": f"c{n}-{c}", "embedding": v.tolist()}
                               for c, v in enumerate(vectors[i : i + 100])]}).encode()
        for n, i in enumerate(range(0, len(vectors), 100))
    ]  # fmt: skip


def ingest(url: str, library_id: str, bodies: list[bytes], clients: int = 4) -> float:
    cursor = iter(range(len(bodies)))
    lock = threading.Lock()

    def work() -> None:
        with httpx.Client(base_url=url, timeout=120, follow_redirects=True) as client:
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
                assert response.status_code == 201, response.text

    started = time.perf_counter()
    threads = [threading.Thread(target=work) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return 100 * len(bodies) / (time.perf_counter() - started)


def _read_worker(args: tuple[str, str, list[bytes], float, int]) -> int:
    """One client process: its own threads, its own interpreter (no shared GIL)."""
    url, library_id, bodies, seconds, threads = args
    stop = time.monotonic() + seconds
    counts = [0] * threads

    def work(worker: int) -> None:
        with httpx.Client(base_url=url, timeout=30) as client:
            n = worker
            while time.monotonic() < stop:
                response = client.post(
                    f"/libraries/{library_id}/query",
                    content=bodies[n % len(bodies)],
                    headers={"content-type": "application/json"},
                )
                assert response.status_code == 200
                counts[worker] += 1
                n += threads

    pool = [threading.Thread(target=work, args=(w,)) for w in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    return sum(counts)


def read_rate(
    urls: list[str],
    library_id: str,
    queries: np.ndarray,
    seconds: float,
    processes: int = 4,
    threads: int = 2,
) -> float:
    """Queries/s from client processes spread evenly over ``urls``."""
    import multiprocessing

    bodies = [json.dumps({"query_embedding": q.tolist(), "k": 10}).encode() for q in queries]
    jobs = [(urls[p % len(urls)], library_id, bodies, seconds, threads) for p in range(processes)]
    with multiprocessing.get_context("spawn").Pool(processes) as pool:
        total = sum(pool.map(_read_worker, jobs))
    return total / seconds


def throughput(root: Path) -> dict[str, Any]:
    vectors = np.load(DATA).astype(np.float32)[:10_000]
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    bodies = ingest_bodies(vectors)
    single = NodeProcess(root / "single", "--log-level", "warning").start()
    cluster = ClusterProcesses(root / "three", 3, "--log-level", "warning").start()
    try:
        leader = cluster.leader()
        ones: list[float] = []
        threes: list[float] = []
        library_id = ""
        for attempt in range(3):  # alternating, so both see the same machine load
            with single.client() as api:
                made = api.post("/libraries", json={"name": f"one-{attempt}", "dimension": 384})
            ones.append(ingest(single.url, made.json()["id"], bodies))
            with cluster.client(leader) as api:
                made = api.post("/libraries", json={"name": f"three-{attempt}", "dimension": 384})
            library_id = made.json()["id"]
            threes.append(ingest(cluster.nodes[leader].url, library_id, bodies))
        single.kill()
        cluster.converged(timeout=120)
        queries = vectors[:200]
        leader_only = read_rate([cluster.nodes[leader].url], library_id, queries, 8.0)
        followers = [cluster.nodes[n].url for n in cluster.followers()]
        spread = read_rate(followers, library_id, queries, 8.0)
    finally:
        single.kill()
        cluster.stop()
    return {
        "one": statistics.median(ones),
        "three": statistics.median(threes),
        "ones": ones,
        "threes": threes,
        "leader_reads": leader_only,
        "follower_reads": spread,
    }


def print_failover(samples: list[float]) -> None:
    print(
        f"\n### Failover: leader SIGKILL to first acknowledged write ({len(samples)} drills, "
        "election timeout 1 s, randomised 1-2 s)\n"
    )
    print("| p50 s | p90 s | p99 s | max s | mean s |")
    print("|---|---|---|---|---|")
    print(
        f"| {pct(samples, 50):.2f} | {pct(samples, 90):.2f} | {pct(samples, 99):.2f} | "
        f"{max(samples):.2f} | {statistics.mean(samples):.2f} |"
    )
    print("\nsamples: " + ", ".join(f"{s:.2f}" for s in samples))


def print_throughput(rates: dict[str, Any]) -> None:
    print(
        "\n### Replicated ingest (10,000 x 384, documents of 100 chunks, 4 clients, fsync always)\n"
    )
    print("| nodes | chunks/s | ratio to one node |")
    print("|---|---|---|")
    print(f"| 1 | {rates['one']:,.0f} | 1.00 |")
    print(f"| 3 | {rates['three']:,.0f} | {rates['three'] / rates['one']:.2f} |")
    print(
        "\nruns (alternating; medians above): one node "
        + ", ".join(f"{r:,.0f}" for r in rates["ones"])
        + "; three nodes "
        + ", ".join(f"{r:,.0f}" for r in rates["threes"])
    )
    print("\n### Reads (k=10 queries over 10,000 vectors, 4 client processes x 2 threads, 8 s)\n")
    print("| served by | queries/s | ratio |")
    print("|---|---|---|")
    print(f"| the leader alone | {rates['leader_reads']:,.0f} | 1.00 |")
    print(
        f"| the two followers | {rates['follower_reads']:,.0f} | "
        f"{rates['follower_reads'] / rates['leader_reads']:.2f} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--drills", type=int, default=25)
    parser.add_argument("--skip-failover", action="store_true")
    args = parser.parse_args()
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        if not args.skip_failover:
            print_failover(failover(args.drills, Path(tmp)))
        print_throughput(throughput(Path(tmp)))


if __name__ == "__main__":
    main()
