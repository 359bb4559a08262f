"""Small replicated writes and linearizable reads: Shoal against etcd.

    python bench/etcd_compare.py [--rounds 3] [--seconds 5]

Both run as three real processes on loopback, on this machine, and are
driven by the same client over HTTP/JSON (etcd through its v3 JSON gateway).
Rounds alternate between the two so the machine's noise falls on both;
each round measures, for 1 and 16 concurrent clients:

- writes: etcd ``PUT`` of a small key; Shoal ``POST`` of one tiny document
  (one chunk, an 8-d embedding) into one library, sent to the leader;
- linearizable reads on a follower: etcd ``range`` (linearizable is its
  default); Shoal ``GET`` of a document with ``consistency=linearizable``.

Prints per-round rates, p50 latency, the servers' CPU per operation (user
and system time of all three processes, from /proc, divided by the
operations done), and the median of per-round ratios (Shoal / etcd, higher
is better for Shoal). etcd comes from Debian's
``etcd-server`` package; the benchmark installs it with apt-get if missing.
"""

from __future__ import annotations

import argparse
import base64
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.loadgen import RequestFor, Result, drive  # noqa: E402
from tests.cluster_harness import ClusterProcesses  # noqa: E402
from tests.harness import free_port  # noqa: E402

CLIENT_COUNTS = (1, 16)


def ensure_etcd() -> str:
    found = shutil.which("etcd")
    if found is None:
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "install", "-y", "etcd-server"], check=True, env=env,
                       stdout=subprocess.DEVNULL)  # fmt: skip
        found = shutil.which("etcd")
    assert found is not None, "etcd-server did not install an etcd binary"
    return found


class EtcdCluster:
    def __init__(self, binary: str, root: Path) -> None:
        self.names = ["e1", "e2", "e3"]
        self.client_ports = {n: free_port() for n in self.names}
        self.peer_ports = {n: free_port() for n in self.names}
        self.root = root
        self.binary = binary
        self.processes: dict[str, subprocess.Popen[bytes]] = {}

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.client_ports[name]}"

    def spawn(self, name: str) -> None:
        """Start one member (a restart finds its data and ignores the bootstrap flags)."""
        initial = ",".join(f"{n}=http://127.0.0.1:{self.peer_ports[n]}" for n in self.names)
        log = open(self.root / f"{name}.log", "ab")  # noqa: SIM115 - closed with the process
        self.processes[name] = subprocess.Popen(
            [self.binary, "--name", name, "--data-dir", str(self.root / name),
             "--listen-client-urls", self.url(name), "--advertise-client-urls", self.url(name),
             "--listen-peer-urls", f"http://127.0.0.1:{self.peer_ports[name]}",
             "--initial-advertise-peer-urls", f"http://127.0.0.1:{self.peer_ports[name]}",
             "--initial-cluster", initial, "--initial-cluster-state", "new",
             "--log-level", "warn"],
            stdout=log, stderr=log,
        )  # fmt: skip

    def start(self) -> EtcdCluster:
        for name in self.names:
            self.spawn(name)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.leader() is not None:
                return self
            time.sleep(0.2)
        raise TimeoutError("etcd did not elect a leader in 60 s")

    def leader(self) -> str | None:
        for name in self.names:
            try:
                status = httpx.post(self.url(name) + "/v3/maintenance/status", json={}, timeout=2)
            except httpx.HTTPError:
                continue
            if status.status_code == 200 and status.json().get("leader"):
                leader_id = status.json()["leader"]
                if status.json()["header"]["member_id"] == leader_id:
                    return name
        return None

    def stop(self) -> None:
        for process in self.processes.values():
            process.send_signal(signal.SIGTERM)
        for process in self.processes.values():
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def cpu_seconds(pids: list[int]) -> float:
    """User and system CPU these processes have used so far."""
    total = 0.0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def driven(url: str, request_for: RequestFor, clients: int, seconds: float,
           pids: list[int]) -> tuple[Result, float]:  # fmt: skip
    """The load's result and the servers' CPU milliseconds per operation."""
    before = cpu_seconds(pids)
    result = drive(url, request_for, clients, seconds)
    return result, 1000 * (cpu_seconds(pids) - before) / max(1, result.operations)


def etcd_round(cluster: EtcdCluster, seconds: float) -> dict[str, tuple[Result, float]]:
    leader = cluster.leader()
    assert leader is not None
    follower = next(n for n in cluster.names if n != leader)

    def put(n: int) -> tuple[str, str, object]:
        return "POST", "/v3/kv/put", {"key": b64(f"k{n % 1000}"), "value": b64("v")}

    def get(n: int) -> tuple[str, str, object]:
        return "POST", "/v3/kv/range", {"key": b64(f"k{n % 1000}")}

    pids = [process.pid for process in cluster.processes.values()]
    results = {}
    for clients in CLIENT_COUNTS:
        results[f"writes x{clients}"] = driven(cluster.url(leader), put, clients, seconds, pids)
    for clients in CLIENT_COUNTS:
        results[f"reads x{clients}"] = driven(cluster.url(follower), get, clients, seconds, pids)
    return results


def shoal_round(
    cluster: ClusterProcesses, library_id: str, document_ids: list[str], seconds: float
) -> dict[str, tuple[Result, float]]:
    leader = cluster.leader()
    follower = next(n for n in cluster.running() if n != leader)

    def put(n: int) -> tuple[str, str, object]:
        body = {"chunks": [{"text": f"t{n}", "embedding": [1.0, 0.5, 0, 0, 0, 0, 0, (n % 7) / 7]}]}
        return "POST", f"/libraries/{library_id}/documents", body

    def get(n: int) -> tuple[str, str, object | None]:
        document_id = document_ids[n % len(document_ids)]
        path = f"/libraries/{library_id}/documents/{document_id}?consistency=linearizable"
        return "GET", path, None

    pids = [node.pid for node in cluster.nodes.values()]
    results = {}
    for clients in CLIENT_COUNTS:
        results[f"writes x{clients}"] = driven(cluster.nodes[leader].url, put, clients, seconds,
                                               pids)  # fmt: skip
    for clients in CLIENT_COUNTS:
        results[f"reads x{clients}"] = driven(cluster.nodes[follower].url, get, clients, seconds,
                                              pids)  # fmt: skip
    return results


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()
    binary = ensure_etcd()
    version = subprocess.run([binary, "--version"], capture_output=True, text=True).stdout
    root = Path(tempfile.mkdtemp(prefix="etcd-compare-"))
    etcd = EtcdCluster(binary, root).start()
    shoal = ClusterProcesses(root / "shoal", 3, "--log-level", "warning").start()
    try:
        with shoal.client(shoal.leader()) as api:
            library_id = api.post("/libraries", json={"name": "bench", "dimension": 8}).json()["id"]
            document_ids = []
            for n in range(50):
                body = {"chunks": [{"text": f"seed {n}", "embedding": [1.0] * 8}]}
                created = api.post(f"/libraries/{library_id}/documents", json=body)
                document_ids.append(created.json()["id"])
        shoal.converged(timeout=60)
        rows: dict[str, list[tuple[tuple[float, float, float], tuple[float, float, float]]]] = {}
        load_before = os.getloadavg()[0]
        for round_ in range(args.rounds):
            etcd_results = etcd_round(etcd, args.seconds)
            shoal_results = shoal_round(shoal, library_id, document_ids, args.seconds)
            for work in etcd_results:
                (ours, our_cpu), (theirs, their_cpu) = shoal_results[work], etcd_results[work]
                pair = (ours.rate, ours.p50_ms, our_cpu), (theirs.rate, theirs.p50_ms, their_cpu)
                rows.setdefault(work, []).append(pair)
                print(f"round {round_ + 1} {work}: shoal {ours.rate:.0f}/s p50 {ours.p50_ms:.1f} "
                      f"ms {our_cpu:.3f} ms CPU/op, etcd {theirs.rate:.0f}/s p50 "
                      f"{theirs.p50_ms:.1f} ms {their_cpu:.3f} ms CPU/op", flush=True)  # fmt: skip
    finally:
        shoal.stop()
        etcd.stop()
        shutil.rmtree(root, ignore_errors=True)
    print()
    print(f"Machine: {platform.machine()}, {os.cpu_count()} cores, load average "
          f"{load_before:.2f} before, {os.getloadavg()[0]:.2f} after; {version.splitlines()[0]}; "
          "client: bench/loadgen.py (one keep-alive connection per client)")  # fmt: skip
    print()
    print("| work | Shoal ops/s (median) | etcd ops/s (median) | Shoal p50 ms | etcd p50 ms "
          "| Shoal CPU ms/op | etcd CPU ms/op | Shoal ÷ etcd (median of rounds) |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|")
    for work, pairs in rows.items():
        ratio = statistics.median(s[0] / e[0] for s, e in pairs)
        print(f"| {work} | {statistics.median(s[0] for s, _ in pairs):.0f} "
              f"| {statistics.median(e[0] for _, e in pairs):.0f} "
              f"| {statistics.median(s[1] for s, _ in pairs):.1f} "
              f"| {statistics.median(e[1] for _, e in pairs):.1f} "
              f"| {statistics.median(s[2] for s, _ in pairs):.3f} "
              f"| {statistics.median(e[2] for _, e in pairs):.3f} | {ratio:.2f}x |")  # fmt: skip
    writes = rows.get("writes x16"), rows.get("writes x1")
    if writes[0] and writes[1]:
        scale = statistics.median(a[0][0] / b[0][0] for a, b in zip(*writes, strict=True))
        print(f"\nShoal writes, 16 clients ÷ 1 client: {scale:.1f}x")


if __name__ == "__main__":
    main()
