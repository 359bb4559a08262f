"""Snapshot install benchmark: a snapshot of over a gigabyte, streamed to an
empty node while the cluster keeps taking writes.

    python bench/snapshot_bench.py [--vectors 700000]

Three real node processes on loopback. The MiniLM vectors (384-d float32,
tiled with a little noise to the count asked for) go into one brute-force
library while the third node is down and its data directory is wiped; the
leader then writes two snapshots (so its log is compacted behind them) and
the empty node is started. A writer keeps writing small documents the
whole time. Printed: the snapshot's size, the time from the node's start
to the installed snapshot (and the MB/s that makes), the time until it has
applied everything the leader had committed, the writes acknowledged
meanwhile, and whether the leader's term changed.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
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
CHUNKS_PER_DOCUMENT = 1000


def vectors(count: int) -> np.ndarray:
    base = np.load(DATA).astype(np.float32)
    rng = np.random.default_rng(0)
    tiles = -(-count // len(base))
    out = np.tile(base, (tiles, 1))[:count]
    out += rng.normal(0, 0.01, out.shape).astype(np.float32)
    return out


def load(url: str, library_id: str, matrix: np.ndarray, clients: int = 3) -> float:
    """Ingest in documents of CHUNKS_PER_DOCUMENT chunks; returns seconds."""
    starts = list(range(0, len(matrix), CHUNKS_PER_DOCUMENT))
    lock = threading.Lock()
    retries = [0]

    def work() -> None:
        with httpx.Client(base_url=url, timeout=300, follow_redirects=True) as client:
            while True:
                with lock:
                    if not starts:
                        return
                    start = starts.pop()
                rows = matrix[start : start + CHUNKS_PER_DOCUMENT]
                body = {"chunks": [{"text": f"v{start + n}", "embedding": row.tolist()}
                                   for n, row in enumerate(rows)]}  # fmt: skip
                for _ in range(100):  # through leader changes; the key makes it once
                    try:
                        response = client.post(
                            f"/libraries/{library_id}/documents", json=body,
                            headers={"Idempotency-Key": f"load-{start}"},
                        )  # fmt: skip
                    except httpx.HTTPError:
                        time.sleep(1)
                        continue
                    if response.status_code == 201:
                        break
                    retries[0] += 1
                    time.sleep(1)
                else:
                    raise RuntimeError(f"document at {start} was never written")

    began = time.perf_counter()
    threads = [threading.Thread(target=work) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if retries[0]:
        print(f"{retries[0]} load requests were answered 503 and sent again", flush=True)
    return time.perf_counter() - began


def gauges(url: str) -> dict[str, float]:
    """A node's Prometheus gauges (cheap: /cluster hashes the whole state)."""
    try:
        text = httpx.get(url + "/metrics", timeout=10).text
    except httpx.HTTPError:
        return {}
    values = {}
    for line in text.splitlines():
        if line.startswith("shoal_") and " " in line:
            name, value = line.rsplit(" ", 1)
            values[name] = float(value)
    return values


def find_leader(cluster: ClusterProcesses, timeout: float = 120) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for node_id in cluster.running():
            if gauges(cluster.nodes[node_id].url).get("shoal_is_leader") == 1:
                return node_id
        time.sleep(0.2)
    raise TimeoutError("no leader")


class Writer:
    """Small writes to whichever node leads, all the time."""

    def __init__(self, cluster: ClusterProcesses, library_id: str) -> None:
        self.cluster, self.library_id = cluster, library_id
        self.acked = 0
        self.failed = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> Writer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)

    def _run(self) -> None:
        with httpx.Client(timeout=10, follow_redirects=True) as client:
            n = 0
            url = self.cluster.nodes[find_leader(self.cluster)].url
            while not self._stop.is_set():
                n += 1
                body = {"chunks": [{"text": f"w{n}", "embedding": [0.1] * 384}]}
                try:
                    response = client.post(
                        f"{url}/libraries/{self.library_id}/documents", json=body,
                        headers={"Idempotency-Key": f"w{n}"},
                    )  # fmt: skip
                    ok = response.status_code == 201
                except httpx.HTTPError:
                    ok = False
                if ok:
                    self.acked += 1
                else:
                    self.failed += 1
                    url = self.cluster.nodes[find_leader(self.cluster)].url
                time.sleep(0.01)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--vectors", type=int, default=700_000)
    args = parser.parse_args()
    matrix = vectors(args.vectors)
    root = Path(tempfile.mkdtemp(prefix="shoal-snapbench-"))
    cluster = ClusterProcesses(
        root, 3, "--log-level", "info", "--snapshot-every", "100000000",
        "--segment-bytes", str(8 << 20), election_timeout=1.0,
    ).start()  # fmt: skip
    try:
        leader = find_leader(cluster)
        target = next(n for n in cluster.running() if n != leader)
        url = cluster.nodes[leader].url
        with httpx.Client(base_url=url, timeout=60) as client:
            spec = {"name": "big", "dimension": 384, "index_type": "brute_force"}
            library = client.post("/libraries", json=spec).json()
            small = client.post("/libraries", json={"name": "writes", "dimension": 384}).json()
        cluster.kill(target)
        shutil.rmtree(cluster.nodes[target].data_dir)
        seconds = load(url, library["id"], matrix)
        print(f"loaded {len(matrix):,} vectors in {seconds:.0f} s", flush=True)
        leader = find_leader(cluster)  # it may have changed under the load
        url = cluster.nodes[leader].url
        with httpx.Client(base_url=url, timeout=1800) as client:
            for _ in range(2):  # two snapshots: the log is compacted behind the first
                client.post(f"/libraries/{small['id']}/documents",
                            json={"chunks": [{"text": "x", "embedding": [0.2] * 384}]})  # fmt: skip
                client.post("/admin/snapshot").raise_for_status()
            view = client.get("/cluster").json()
        snapshot_dir = cluster.nodes[leader].data_dir / "snapshots"
        size = max(p.stat().st_size for p in snapshot_dir.glob("*.snap"))
        term_before = gauges(url)["shoal_term"]
        print(f"snapshot {size / 1e6:,.0f} MB at entry {view['snapshot']['index']}; "
              f"leader log starts at {view['wal']['first_index']}", flush=True)  # fmt: skip
        assert view["wal"]["first_index"] > 1, "the leader's log was not compacted"
        writer = Writer(cluster, small["id"]).start()
        time.sleep(2)
        started = time.monotonic()
        cluster.restart(target)
        installed_at = caught_up_at = None
        goal = 0  # the leader's commit index when the install finished
        deadline = started + 3600
        while time.monotonic() < deadline:
            if installed_at is None:
                log = cluster.nodes[target].log_path.read_text(errors="replace")
                if "installed the leader's snapshot" in log:
                    installed_at = time.monotonic()
                    goal = gauges(url).get("shoal_commit_index", 0)
            else:
                mine = gauges(cluster.nodes[target].url)
                if mine.get("shoal_applied_index", -1) >= goal:
                    caught_up_at = time.monotonic()
                    break
            time.sleep(0.2)
        writer.stop()
        after = gauges(cluster.nodes[find_leader(cluster)].url)
        assert installed_at is not None and caught_up_at is not None, "did not catch up"
        install_s = installed_at - started
        print()
        print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; "
              f"python {platform.python_version()}")  # fmt: skip
        print(f"command: python bench/snapshot_bench.py --vectors {args.vectors}")
        print()
        print(
            "| snapshot MB | start to installed s | MB/s | start to caught up s "
            "| writes acked meanwhile | failed | leader term changed |"
        )
        print("|---|---|---|---|---|---|---|")
        print(f"| {size / 1e6:,.0f} | {install_s:.1f} | {size / 1e6 / install_s:.0f} "
              f"| {caught_up_at - started:.1f} | {writer.acked} | {writer.failed} "
              f"| {'yes' if after.get('shoal_term') != term_before else 'no'} |")  # fmt: skip
        for node_id, node in cluster.nodes.items():
            lines = node.log_path.read_text(errors="replace").splitlines()
            notable = [line for line in lines if "shoal." in line and " INFO shoal.engine: snap"
                       not in line]  # fmt: skip
            print(f"\n{node_id}:" + "".join(f"\n  {line[:200]}" for line in notable[-12:]))
    finally:
        cluster.stop()
        print(f"\nnode logs kept in {root}")


if __name__ == "__main__":
    main()
