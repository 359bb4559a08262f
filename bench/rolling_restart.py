"""Rolling restart under writes: Shoal against etcd.

    python bench/rolling_restart.py [--rounds 3]

Each round starts a fresh three-node cluster of real processes on loopback,
starts one writer, and restarts every node once, one at a time, followers
first and the leader last (SIGTERM, wait for the exit, start again, wait
until it is healthy and caught up, one second's pause). Both stop a leader
the same way: it hands leadership over before it exits (etcd does so on
SIGTERM by default).

- Shoal's writer is the SDK (every node's URL; its own retries and
  Idempotency-Keys) adding one-chunk documents.
- etcd's writer PUTs a small key through the v3 JSON gateway and, when a
  node fails or refuses, sends the same write to the next node, for up to
  10 s (what the SDK does for Shoal).

A write counts as failed when its client gave up. Rounds alternate between
the two; the table gives each round and the medians, and the ratio of
write p99 during the roll (Shoal / etcd: below 1 is better for Shoal).
"""

from __future__ import annotations

import argparse
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.etcd_compare import EtcdCluster, b64, ensure_etcd  # noqa: E402
from tests.cluster.sdk_writer import SdkWriter  # noqa: E402
from tests.cluster_harness import ClusterProcesses  # noqa: E402

PAUSE = 1.0


@dataclass
class Roll:
    system: str
    writes: int
    failed: int
    p50: float
    p99: float
    worst: float
    seconds: float


def _summary(system: str, latencies: list[float], failed: int, seconds: float) -> Roll:
    ordered = sorted(latencies) or [float("nan")]

    def at(share: float) -> float:
        return ordered[min(len(ordered) - 1, int(share * (len(ordered) - 1)))]

    return Roll(system, len(latencies), failed, at(0.5), at(0.99), ordered[-1], seconds)


def _caught_up(cluster: ClusterProcesses, node_id: str, timeout: float = 60.0) -> None:
    target = cluster.status(cluster.leader())["commit_index"]  # type: ignore[index]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        view = cluster.status(node_id)
        if view and view["applied_index"] >= target:
            return
        time.sleep(0.05)
    raise TimeoutError(f"{node_id} did not catch up")


def shoal_roll(root: Path) -> Roll:
    cluster = ClusterProcesses(root, 3, "--log-level", "warning").start()
    try:
        cluster.leader()
        urls = ",".join(node.url for node in cluster.nodes.values())
        writer = SdkWriter(urls, "rolling").start()
        time.sleep(PAUSE)
        started = time.monotonic()
        leader = cluster.leader()
        for node_id in [n for n in cluster.nodes if n != leader] + [leader]:
            if cluster.nodes[node_id].stop() != 0:
                raise RuntimeError(f"{node_id} did not stop cleanly")
            cluster.restart(node_id, wait=True)
            _caught_up(cluster, node_id)
            time.sleep(PAUSE)
        ended = time.monotonic()
        writer.stop()
        latencies = [took for sent, took in writer.latencies if started <= sent <= ended]
        writer.stop_and_check()
        return _summary("shoal", latencies, len(writer.failures), ended - started)
    finally:
        cluster.stop()


class EtcdWriter:
    def __init__(self, cluster: EtcdCluster) -> None:
        self.cluster = cluster
        self.latencies: list[tuple[float, float]] = []
        self.failed = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> EtcdWriter:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)

    def _run(self) -> None:
        names = self.cluster.names
        turn, n = 0, 0
        with httpx.Client(timeout=2.0) as http:
            while not self._stop.is_set():
                n += 1
                body = {"key": b64(f"k{n % 1000}"), "value": b64(f"v{n}")}
                sent = time.monotonic()
                while time.monotonic() - sent < 10.0:
                    url = self.cluster.url(names[turn % len(names)])
                    try:
                        answer = http.post(url + "/v3/kv/put", json=body)
                        if answer.status_code == 200 and "error" not in answer.json():
                            self.latencies.append((sent, time.monotonic() - sent))
                            break
                    except httpx.HTTPError:
                        pass
                    turn += 1
                    time.sleep(0.01)
                else:
                    self.failed += 1


def _etcd_healthy(cluster: EtcdCluster, name: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            answer = httpx.get(cluster.url(name) + "/health", timeout=1.0)
            if answer.status_code == 200 and answer.json().get("health") == "true":
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise TimeoutError(f"etcd {name} is not healthy")


def etcd_roll(binary: str, root: Path) -> Roll:
    root.mkdir(parents=True)
    cluster = EtcdCluster(binary, root).start()
    try:
        writer = EtcdWriter(cluster).start()
        time.sleep(PAUSE)
        started = time.monotonic()
        leader = cluster.leader()
        for name in [n for n in cluster.names if n != leader] + [leader]:
            process = cluster.processes[name]
            process.send_signal(signal.SIGTERM)
            process.wait(30)
            cluster.spawn(name)
            _etcd_healthy(cluster, name)
            time.sleep(PAUSE)
        ended = time.monotonic()
        writer.stop()
        latencies = [took for sent, took in writer.latencies if started <= sent <= ended]
        return _summary("etcd", latencies, writer.failed, ended - started)
    finally:
        cluster.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    binary = ensure_etcd()
    version = subprocess.run([binary, "--version"], capture_output=True, text=True).stdout
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, "  # noqa: T201
          f"load {os.getloadavg()[0]:.2f}; {version.splitlines()[0]}")  # fmt: skip
    rolls: list[Roll] = []
    with tempfile.TemporaryDirectory(prefix="shoal-roll-") as tmp:
        for round_number in range(args.rounds):
            rolls.append(shoal_roll(Path(tmp) / f"shoal-{round_number}"))
            rolls.append(etcd_roll(binary, Path(tmp) / f"etcd-{round_number}"))
    print("\n| round | system | writes | failed | p50 ms | p99 ms | max ms | roll s |")  # noqa: T201
    print("|---|---|---|---|---|---|---|---|")  # noqa: T201
    for n, roll in enumerate(rolls):
        print(f"| {n // 2 + 1} | {roll.system} | {roll.writes} | {roll.failed} | "  # noqa: T201
              f"{roll.p50 * 1000:.1f} | {roll.p99 * 1000:.1f} | {roll.worst * 1000:.0f} | "
              f"{roll.seconds:.1f} |")  # fmt: skip
    ratios = [shoal.p99 / etcd.p99 for shoal, etcd in zip(rolls[::2], rolls[1::2], strict=True)]
    print(f"\nwrite p99 during the roll, Shoal / etcd (median of rounds): "  # noqa: T201
          f"{statistics.median(ratios):.2f}x (rounds: {', '.join(f'{r:.2f}' for r in ratios)}); "
          f"failed writes: Shoal {sum(r.failed for r in rolls[::2])}, "
          f"etcd {sum(r.failed for r in rolls[1::2])}")  # fmt: skip


if __name__ == "__main__":
    main()
