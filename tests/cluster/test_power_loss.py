"""Power cuts, made by a file system that forgets what was not fsynced.

Each node's data directory is a FUSE mount (tests/powerfs.py) over a
directory of its own. A power cut is a kill -9 of the node followed by the
file system dropping (or tearing) everything the node had not fsynced; the
node then starts again from what is left. Each drill ends with the history
check: no acknowledged write lost, none applied twice, no stale read, one
leader per term, equal digests.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cluster.register_workload import (
    LeaderMonitor,
    RegisterWorkload,
    make_registers,
    verify,
)
from tests.cluster_harness import ClusterProcesses
from tests.harness import REPO


def _unavailable() -> str | None:
    if os.geteuid() != 0 or not os.path.exists("/dev/fuse"):
        return "FUSE mounts need root and /dev/fuse"
    if shutil.which("fusermount3") is None:
        return "fuse3 is not installed (deploy/install-test-tools.sh installs it)"
    try:
        import mfusepy  # noqa: F401
    except (ImportError, OSError) as exc:
        return f"mfusepy cannot load libfuse: {exc}"
    return None


pytestmark = [
    pytest.mark.cluster,
    pytest.mark.skipif(_unavailable() is not None, reason=str(_unavailable())),
]


class PowerCluster:
    """A cluster whose nodes' data directories are power-cut file systems."""

    def __init__(self, root: Path, seed: int) -> None:
        self.cluster = ClusterProcesses(
            root / "c", 3, "--segment-bytes", "65536", "--snapshot-every", "60"
        )
        self.seed = seed
        self.mounts: dict[str, subprocess.Popen[bytes]] = {}
        for node_id, node in self.cluster.nodes.items():
            backing = root / "disk" / node_id
            backing.mkdir(parents=True)
            node.data_dir.mkdir(parents=True)
            fs_log = open(root / f"powerfs-{node_id}.log", "ab")  # noqa: SIM115
            self.mounts[node_id] = subprocess.Popen(
                [sys.executable, "-m", "tests.powerfs", str(backing), str(node.data_dir),
                 str(seed + int(node_id[1:])), "0.02"], cwd=REPO, stdout=fs_log,
                stderr=fs_log,
            )  # fmt: skip
            fs_log.close()
        for node in self.cluster.nodes.values():
            deadline = time.monotonic() + 20
            while not os.path.ismount(node.data_dir):
                assert time.monotonic() < deadline, "the power-cut file system did not mount"
                time.sleep(0.05)

    def cut(self, node_id: str) -> None:
        """kill -9, then the node's unsynced writes are lost or torn."""
        self.cluster.kill(node_id)
        (self.cluster.nodes[node_id].data_dir / ".powercut").write_bytes(b"1")

    def close(self) -> None:
        self.cluster.stop()
        for node_id, process in self.mounts.items():
            subprocess.run(["fusermount3", "-u", str(self.cluster.nodes[node_id].data_dir)],
                           check=False, capture_output=True)  # fmt: skip
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)


@pytest.fixture
def power_cluster(tmp_path: Path) -> Iterator[PowerCluster]:
    made = PowerCluster(tmp_path, seed=int(time.time()) % 1000)
    try:
        made.cluster.start(timeout=120)
        yield made
    finally:
        made.close()


def _run(power: PowerCluster, cuts: list[list[str] | str]) -> dict[str, object]:
    cluster = power.cluster
    keys = make_registers(cluster, 3)
    monitor = LeaderMonitor(cluster).start()
    workload = RegisterWorkload(cluster, keys, clients=3, seed=power.seed).start()
    try:
        for victims in cuts:
            time.sleep(2.0)
            names = [cluster.leader()] if victims == "leader" else list(victims)
            for node_id in names:
                power.cut(node_id)
            time.sleep(1.0)
            for node_id in names:
                cluster.restart(node_id)
        time.sleep(3.0)
    finally:
        ops = workload.stop()
    for node_id in cluster.nodes:
        cluster.nodes[node_id].wait_ready(60)
    result = verify(cluster, ops, keys, monitor)
    monitor.stop()
    acknowledged = sum(1 for op in ops if op.kind == "write" and op.outcome == "ok")
    assert acknowledged > 20, acknowledged
    return result


def test_power_cut_of_the_leader_and_of_a_follower(power_cluster: PowerCluster) -> None:
    followers = power_cluster.cluster.followers()
    _run(power_cluster, ["leader", [followers[0]], "leader"])


def test_power_cut_of_the_whole_cluster(power_cluster: PowerCluster) -> None:
    _run(power_cluster, [list(power_cluster.cluster.nodes), list(power_cluster.cluster.nodes)])
