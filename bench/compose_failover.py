"""Failover on containers next to failover on processes, in the same run.

    bash deploy/build-offline-images.sh     # as root; images made with no registry
    python bench/compose_failover.py [--kills 12] [--round 3]

Two three-node clusters at once on this machine: the compose stack
(``docker-compose.cluster.yml`` with ``deploy/compose.offline.yml``, its own
project) and three node processes on loopback. Rounds of ``--round`` kills
alternate between them. One sample: a writer keeps writing (moving to
another node on any failure, following 307s), the leader is killed
(``docker kill`` of its container, or SIGKILL of its process), and the time
from just before the kill to the completion of the first write invoked
after it that another node acknowledged is recorded (so for containers it
includes the time docker's CLI takes to deliver the kill). The killed node
is started again (``docker start``, or a new process on the same data) and
must be ready before the next kill. Election timeout 1 s (randomised 1-2 s)
on both.
"""

from __future__ import annotations

import argparse
import os
import platform
import secrets
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from cluster_bench import Writer, pct  # noqa: E402

from tests.cluster_harness import ClusterProcesses  # noqa: E402
from tests.containers.compose import ComposeCluster, DockerEngine, unavailable  # noqa: E402


def one_kill(cluster: Any, writer: Writer) -> float:
    time.sleep(1.0)
    leader = cluster.leader(timeout=30)
    if isinstance(cluster, ComposeCluster):
        cluster.container(leader)  # its id looked up now, not inside the timed kill
    # From just before the kill; writes the old leader still acknowledged
    # while docker's CLI was delivering it do not count.
    killed_at = time.monotonic()
    cluster.kill(leader)
    deadline = killed_at + 30
    while writer.first_ack_after(killed_at, leader) is None and time.monotonic() < deadline:
        time.sleep(0.01)
    first = writer.first_ack_after(killed_at, leader)
    cluster.restart(leader, wait=True)
    return (first or float("inf")) - killed_at


def start_writer(cluster: Any, name: str) -> Writer:
    with cluster.client(cluster.leader(timeout=60)) as api:
        library_id = api.post("/libraries", json={"name": name}).json()["id"]
    return Writer(cluster, library_id).start()  # type: ignore[arg-type]


def row(label: str, samples: list[float]) -> str:
    cells = [pct(samples, 50), pct(samples, 90), pct(samples, 99), max(samples),
             statistics.mean(samples)]  # fmt: skip
    return f"| {label} | {len(samples)} | " + " | ".join(f"{c:.2f}" for c in cells) + " |"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--kills", type=int, default=12, help="kills of each kind")
    parser.add_argument("--round", type=int, default=3, help="kills in a row before switching")
    args = parser.parse_args()
    why = unavailable()
    if why is not None:
        raise SystemExit(why)
    with tempfile.TemporaryDirectory() as tmp:
        engine = DockerEngine(Path(tmp) / "dockerd.log").start()
        containers = ComposeCluster(f"shoalbench{os.getpid()}", secrets.token_hex(16))
        processes = ClusterProcesses(Path(tmp) / "processes", 3, "--log-level", "warning")
        samples: dict[str, list[float]] = {"containers": [], "processes": []}
        try:
            containers.up(timeout=120)
            processes.start()
            writers = {"containers": start_writer(containers, "failover"),
                       "processes": start_writer(processes, "failover")}  # fmt: skip
            clusters = {"containers": containers, "processes": processes}
            while min(len(s) for s in samples.values()) < args.kills:
                for kind, cluster in clusters.items():
                    for _ in range(min(args.round, args.kills - len(samples[kind]))):
                        samples[kind].append(one_kill(cluster, writers[kind]))
                        print(f"{kind}: {samples[kind][-1]:.2f} s", flush=True)
            for writer in writers.values():
                writer.stop()
            digests = {kind: cluster.converged(timeout=60) for kind, cluster in clusters.items()}
        finally:
            processes.stop()
            containers.remove_everything()
            engine.stop()
    load = os.getloadavg()[0]
    print(f"\nmachine: {platform.machine()}, {os.cpu_count()} cores, "
          f"Python {platform.python_version()}; load average {load:.2f}")  # fmt: skip
    print("\n| leader killed | kills | p50 s | p90 s | p99 s | max s | mean s |")
    print("|---|---|---|---|---|---|---|")
    print(row("container (`docker kill`)", samples["containers"]))
    print(row("process (SIGKILL)", samples["processes"]))
    ratio = pct(samples["processes"], 50) / pct(samples["containers"], 50)
    print(f"\np50 ratio, processes ÷ containers: {ratio:.2f}x (higher is better for containers)")
    for kind, values in samples.items():
        print(f"{kind} samples: " + ", ".join(f"{v:.2f}" for v in values))
    print(f"digests equal within each cluster afterwards: {digests}")


if __name__ == "__main__":
    main()
