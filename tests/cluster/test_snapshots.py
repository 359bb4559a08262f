"""Snapshot transfers on real processes: slow ones, repeated ones, and none
at all for a follower that does not need one.

A watcher polls every node's applied index throughout; within one process
lifetime it must never go back (a rolled-back state machine answers reads
from the past).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import httpx
import pytest

from tests.cluster.register_workload import (
    LeaderMonitor,
    RegisterWorkload,
    make_registers,
    verify,
)
from tests.cluster_harness import SECRET_HEADER, ClusterProcesses

pytestmark = pytest.mark.cluster
Make = Callable[..., ClusterProcesses]


class AppliedWatcher:
    """Polls each node's applied index; records any step backwards."""

    def __init__(self, cluster: ClusterProcesses) -> None:
        self.cluster = cluster
        self.rollbacks: list[tuple[str, int, int]] = []
        self._seen: dict[str, tuple[int, int]] = {}  # node -> (pid, applied)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> AppliedWatcher:
        self._thread.start()
        return self

    def stop(self) -> list[tuple[str, int, int]]:
        self._stop.set()
        self._thread.join(10)
        return self.rollbacks

    def _run(self) -> None:
        with httpx.Client(timeout=2) as client:
            while not self._stop.wait(0.05):
                for node_id, node in self.cluster.nodes.items():
                    process = node.process
                    if process is None or process.poll() is not None:
                        continue
                    try:
                        view = client.get(node.url + "/cluster").json()
                    except (httpx.HTTPError, ValueError):
                        continue
                    applied = int(view["applied_index"])
                    pid, before = self._seen.get(node_id, (process.pid, 0))
                    if pid == process.pid and applied < before:
                        self.rollbacks.append((node_id, before, applied))
                    self._seen[node_id] = (process.pid, applied)


def _fill(cluster: ClusterProcesses, leader: str, library: str, documents: int) -> None:
    text = "snapshot filler " * 40
    with cluster.client(leader) as api:
        for n in range(documents):
            body = {"chunks": [{"text": f"{text} {n}", "embedding": [float(n % 7 + 1), 1.0, 0.5]}]}
            response = api.post(f"/libraries/{library}/documents", json=body)
            assert response.status_code == 201, response.text


def _set_chunk_delay(cluster: ClusterProcesses, node_id: str, seconds: float) -> None:
    response = httpx.post(
        cluster.nodes[node_id].url + "/_cluster/faults",
        headers=SECRET_HEADER,
        json={"snapshot_chunk_delay": seconds},
        timeout=10,
    )
    response.raise_for_status()


def test_slow_snapshot_installs_once_while_writes_continue(make_cluster: Make) -> None:
    """A transfer of many chunks taking far longer than an append timeout
    installs in one go: it is not restarted, and the follower is not taken
    for silent meanwhile."""
    cluster = make_cluster(
        3, "--snapshot-every", "40", "--segment-bytes", "8192",
        env={"SHOAL_SNAPSHOT_CHUNK_BYTES": "4096"},
    )  # fmt: skip
    leader = cluster.leader()
    with cluster.client(leader) as api:
        library = api.post("/libraries", json={"name": "bulk", "dimension": 3}).json()["id"]
    behind = cluster.followers()[0]
    cluster.kill(behind)
    _fill(cluster, leader, library, 120)
    view = cluster.status(leader)
    assert view is not None and view["wal"]["first_index"] > 1
    snapshots = (cluster.nodes[leader].data_dir / "snapshots").glob("*.snap")
    snapshot_bytes = max(path.stat().st_size for path in snapshots)
    assert snapshot_bytes > 20 * 4096  # so the transfer has over 20 chunks
    _set_chunk_delay(cluster, leader, 0.1)  # over 2 s in all: four append timeouts
    monitor = LeaderMonitor(cluster).start()
    watcher = AppliedWatcher(cluster).start()
    keys = make_registers(cluster, 2)
    workload = RegisterWorkload(cluster, keys, clients=2, seed=7).start()
    try:
        started = time.monotonic()
        cluster.restart(behind)
        deadline = started + 60
        while "installed the leader's snapshot" not in cluster.nodes[behind].log():
            assert time.monotonic() < deadline, "the snapshot never installed"
            time.sleep(0.2)
        took = time.monotonic() - started
    finally:
        ops = workload.stop()
        _set_chunk_delay(cluster, leader, 0.0)
    assert took > 2.0
    leader_log = cluster.nodes[leader].log().splitlines()
    assert not [line for line in leader_log if "snapshot" in line and "failed" in line]
    assert cluster.nodes[behind].log().count("installed the leader's snapshot") == 1
    assert cluster.leader() == leader  # no election while it installed
    verify(cluster, ops, keys, monitor)
    monitor.stop()
    assert watcher.stop() == []


def test_followers_never_roll_back_across_leader_changes(make_cluster: Make) -> None:
    """Frequent snapshots, a lossy network and leader kills: every new
    leader probes followers that may be ahead of it; none is sent back to
    an older snapshot, and no acknowledged write is lost."""
    cluster = make_cluster(3, "--snapshot-every", "20", "--segment-bytes", "4096")
    keys = make_registers(cluster, 3)
    monitor = LeaderMonitor(cluster).start()
    watcher = AppliedWatcher(cluster).start()
    workload = RegisterWorkload(cluster, keys, clients=3, seed=11).start()
    try:
        cluster.lossy(drop=0.05, duplicate=0.05, delay=0.05)
        for _ in range(3):
            time.sleep(2.0)
            leader = cluster.leader(timeout=30)
            cluster.kill(leader)
            time.sleep(1.5)
            cluster.restart(leader)
        time.sleep(2.0)
    finally:
        ops = workload.stop()
        cluster.heal()
    verify(cluster, ops, keys, monitor)
    monitor.stop()
    assert watcher.stop() == []
    acknowledged = sum(1 for op in ops if op.kind == "write" and op.outcome == "ok")
    assert acknowledged > 20
