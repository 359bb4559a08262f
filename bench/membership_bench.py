"""Read replicas and a learner catching up (issue #13).

    python bench/membership_bench.py reads [--rounds 3]
    python bench/membership_bench.py catch-up [--gib 1.0]

Real node processes on loopback; this machine has 2 cores for every node
and every client, so more nodes share the same cores (the table says so).

- reads: three voters and two learners (joined with ``--join``), 10,000
  MiniLM vectors in a brute-force library; client processes send k=10
  queries for a fixed time to the leader alone, then spread over all five
  nodes; rounds alternate, medians reported.
- catch-up: three voters hold about ``--gib`` GiB of 384-d float32 vectors
  (MiniLM rows with small noise, so none repeat), a writer keeps adding
  documents, and a fresh node joins as a learner; the time from its start
  to having applied what the leader had committed when it started.
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

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.cluster_bench import DATA, ingest, ingest_bodies, read_rate  # noqa: E402
from bench.starvation_bench import histogram, quantile  # noqa: E402
from tests.cluster_harness import SECRET, ClusterProcesses  # noqa: E402
from tests.harness import NodeProcess, free_port  # noqa: E402


def _vectors(count: int, seed: int = 0) -> np.ndarray:
    base = np.load(DATA).astype(np.float32)
    rng = np.random.default_rng(seed)
    rows = base[rng.integers(0, len(base), count)]
    rows += rng.normal(0, 0.01, rows.shape).astype(np.float32)
    rows /= np.linalg.norm(rows, axis=1, keepdims=True)
    return rows


def _load(cluster: ClusterProcesses, library_id: str, bodies: list[bytes], first: int) -> int:
    """Send every body, to whichever node leads, again after a 503 (a leader
    change under a long load); returns how many answers were 503s."""
    cursor = iter(range(len(bodies)))
    lock = threading.Lock()
    retried = [0]

    def work() -> None:
        with httpx.Client(timeout=300, follow_redirects=True) as http:
            url = cluster.nodes[cluster.leader(timeout=60)].url
            while True:
                with lock:
                    n = next(cursor, None)
                if n is None:
                    return
                while True:
                    try:
                        headers = {"content-type": "application/json",
                                   "Idempotency-Key": f"load-{first + n}"}  # fmt: skip
                        answer = http.post(f"{url}/libraries/{library_id}/documents",
                                           content=bodies[n], headers=headers)  # fmt: skip
                    except httpx.HTTPError:
                        answer = None
                    if answer is not None and answer.status_code == 201:
                        break
                    with lock:
                        retried[0] += 1
                    time.sleep(1.0)
                    url = cluster.nodes[cluster.leader(timeout=60)].url

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return retried[0]


def _join(cluster: ClusterProcesses, root: Path, node_id: str) -> NodeProcess:
    urls = ",".join(node.url for node in cluster.nodes.values())
    node = NodeProcess(root / node_id, "--join", urls, "--log-level", "warning",
                       node_id=node_id, env={"SHOAL_CLUSTER_SECRET": SECRET})  # fmt: skip
    node.port = free_port()
    return node.start(wait=False)


def _applied(node: NodeProcess) -> int:
    try:
        return int(httpx.get(node.url + "/cluster", timeout=5).json()["applied_index"])
    except (httpx.HTTPError, ValueError, KeyError):
        return -1


def reads(rounds: int) -> None:
    with tempfile.TemporaryDirectory(prefix="shoal-replicas-") as tmp:
        root = Path(tmp)
        cluster = ClusterProcesses(root, 3, "--log-level", "warning").start()
        learners: list[NodeProcess] = []
        try:
            leader = cluster.leader()
            vectors = _vectors(10_000)
            with cluster.client(leader) as api:
                made = api.post(
                    "/libraries",
                    json={"name": "reads", "dimension": 384, "index_type": "brute_force"},
                )
            library_id = made.json()["id"]
            ingest(cluster.nodes[leader].url, library_id, ingest_bodies(vectors))
            learners = [_join(cluster, root, n) for n in ("r1", "r2")]
            target = int(cluster.status(leader)["commit_index"])  # type: ignore[index]
            deadline = time.monotonic() + 300
            while any(_applied(node) < target for node in learners):
                assert time.monotonic() < deadline, "the learners did not catch up"
                time.sleep(0.5)
            everyone = [node.url for node in cluster.nodes.values()] + [n.url for n in learners]
            queries = vectors[:200]
            alone, spread = [], []
            for _ in range(rounds):
                alone.append(read_rate([cluster.nodes[leader].url], library_id, queries, 8.0))
                spread.append(read_rate(everyone, library_id, queries, 8.0))
        finally:
            for node in learners:
                node.kill()
            cluster.stop()
    print("| nodes answering | queries/s (rounds) | median |")  # noqa: T201
    print("|---|---|---|")  # noqa: T201
    print(f"| leader alone | {', '.join(f'{r:.0f}' for r in alone)} | "  # noqa: T201
          f"{statistics.median(alone):.0f} |")  # fmt: skip
    print(f"| leader + 2 followers + 2 learners | {', '.join(f'{r:.0f}' for r in spread)} | "  # noqa: T201
          f"{statistics.median(spread):.0f} |")  # fmt: skip
    ratio = statistics.median(s / a for s, a in zip(spread, alone, strict=True))
    print(
        f"\nfive nodes / leader alone: {ratio:.2f}x "  # noqa: T201
        "(4 client processes x 2 threads; all on the same 2 cores)"
    )


def _print_raft_timing(cluster: ClusterProcesses) -> None:
    """Each node's gaps between leader messages and Raft loop lag, from /metrics."""
    for node_id, node in sorted(cluster.nodes.items()):
        gaps = histogram(node.url, "shoal_raft_leader_gap_seconds")
        lag = histogram(node.url, "shoal_raft_loop_lag_seconds")
        line = (f"{node_id}: loop lag p99 <= {quantile(lag, 0.99)} s, "
                f"largest <= {quantile(lag, 1.0)} s")  # fmt: skip
        if gaps.get(float("inf")):
            line += (f"; leader gaps p99 <= {quantile(gaps, 0.99)} s, largest <= "
                     f"{quantile(gaps, 1.0)} s ({gaps[float('inf')]:.0f})")  # fmt: skip
        print(line)  # noqa: T201


def catch_up(gib: float) -> None:
    count = int(gib * (1 << 30) / (384 * 4))
    with tempfile.TemporaryDirectory(prefix="shoal-catchup-") as tmp:
        root = Path(tmp)
        cluster = ClusterProcesses(root, 3, "--log-level", "warning").start()
        learner: NodeProcess | None = None
        stop = threading.Event()
        try:
            leader = cluster.leader()
            url = cluster.nodes[leader].url
            with cluster.client(leader) as api:
                made = api.post(
                    "/libraries",
                    json={"name": "big", "dimension": 384, "index_type": "brute_force"},
                )
            library_id = made.json()["id"]
            started = time.perf_counter()
            done = retried = 0
            while done < count:  # in slices: the bodies of 1 GiB would not fit twice
                size = min(50_000, count - done)
                bodies = ingest_bodies(_vectors(size, seed=done))
                retried += _load(cluster, library_id, bodies, done)
                done += size
            loaded = time.perf_counter() - started
            terms = cluster.status(cluster.leader())["term"]  # type: ignore[index]
            print(f"loaded {count:,} vectors ({gib:.2f} GiB of float32) in {loaded:.0f} s; "  # noqa: T201
                  f"{retried} requests answered 503 and sent again; term now {terms}")  # fmt: skip
            _print_raft_timing(cluster)
            leader = cluster.leader()
            url = cluster.nodes[leader].url
            # A snapshot now, so the learner gets the state by snapshot, as a
            # late node does once the log was compacted.
            with cluster.client(leader) as api:
                api.post("/admin/snapshot", timeout=600)

            def writer() -> None:
                small = json.dumps({"chunks": [{"text": "w", "embedding": [0.1] * 384}]})
                with httpx.Client(timeout=30, follow_redirects=True) as http:
                    while not stop.is_set():
                        http.post(f"{url}/libraries/{library_id}/documents", content=small,
                                  headers={"content-type": "application/json"})  # fmt: skip
                        time.sleep(0.05)

            thread = threading.Thread(target=writer, daemon=True)
            thread.start()
            target = int(cluster.status(cluster.leader())["commit_index"])  # type: ignore[index]
            joined_at = time.perf_counter()
            learner = _join(cluster, root, "r1")
            deadline = time.monotonic() + 1800
            while _applied(learner) < target:
                assert time.monotonic() < deadline, "the learner did not catch up"
                time.sleep(0.2)
            took = time.perf_counter() - joined_at
            stop.set()
            thread.join(30)
        finally:
            stop.set()
            if learner is not None:
                learner.kill()
            cluster.stop()
    print(
        f"learner caught up to entry {target} in {took:.1f} s (process start, join, "  # noqa: T201
        "snapshot transfer and install, then the log since), writes continuing"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("what", choices=["reads", "catch-up"])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--gib", type=float, default=1.0)
    args = parser.parse_args()
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, "  # noqa: T201
        f"load {os.getloadavg()[0]:.2f}"
    )
    if args.what == "reads":
        reads(args.rounds)
    else:
        catch_up(args.gib)


if __name__ == "__main__":
    main()
