"""Failover drills on three real processes (RELIABILITY.md).

Each drill runs a register workload, applies a fault, heals, and ends with
the same checks: every register's history is linearizable (no acknowledged
write lost, no failed write present), at most one leader per term, terms
never go backwards, equal state digests everywhere, and a leader again
within a bounded time.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable

import pytest

from tests.cluster.register_workload import (
    LeaderMonitor,
    RegisterWorkload,
    make_registers,
    verify,
)
from tests.cluster_harness import ClusterProcesses

pytestmark = pytest.mark.cluster
Make = Callable[..., ClusterProcesses]
RECOVERY_BOUND = 10.0  # seconds from the fault to the next acknowledged write


def run_drill(
    cluster: ClusterProcesses, fault: Callable[[], float], seed: int, settle: float = 2.0
) -> dict[str, object]:
    keys = make_registers(cluster, 3)
    monitor = LeaderMonitor(cluster).start()
    workload = RegisterWorkload(cluster, keys, clients=4, seed=seed).start()
    try:
        time.sleep(1.5)
        faulted_at = fault()
        time.sleep(settle)
        deadline = faulted_at + RECOVERY_BOUND
        while workload.first_ok_write_after(faulted_at) is None and time.monotonic() < deadline:
            time.sleep(0.1)
        recovered = workload.first_ok_write_after(faulted_at)
        assert recovered is not None, "no write was acknowledged after the fault"
    finally:
        ops = workload.stop()
        cluster.heal()
        for node_id in cluster.nodes:
            if node_id not in cluster.running():
                cluster.restart(node_id)
    result = verify(cluster, ops, keys, monitor)
    monitor.stop()
    result["recovery_seconds"] = recovered - faulted_at
    return result


def test_leader_crash_under_load(make_cluster: Make) -> None:
    cluster = make_cluster(3)

    def fault() -> float:
        leader = cluster.leader()
        moment = time.monotonic()
        cluster.kill(leader)
        return moment

    result = run_drill(cluster, fault, seed=1, settle=3.0)
    assert result["counts"].get("write-ok", 0) > 20  # type: ignore[union-attr]


def test_crash_loop(make_cluster: Make) -> None:
    cluster = make_cluster(3)
    rng = random.Random(11)

    def fault() -> float:
        moment = time.monotonic()
        for _ in range(4):
            leader = cluster.leader(timeout=30)
            cluster.kill(leader)
            time.sleep(rng.uniform(0.3, 2.0))
            cluster.restart(leader)
            time.sleep(rng.uniform(0.5, 1.5))
        return moment

    run_drill(cluster, fault, seed=2)


def test_paused_leader(make_cluster: Make) -> None:
    cluster = make_cluster(3)
    paused: list[str] = []

    def fault() -> float:
        leader = cluster.leader()
        moment = time.monotonic()
        cluster.pause(leader)
        paused.append(leader)
        time.sleep(5.0)  # several election timeouts
        cluster.resume(leader)
        return moment

    run_drill(cluster, fault, seed=3)
    view = cluster.status(paused[0])
    assert view is not None and view["role"] == "follower"


def test_isolated_leader(make_cluster: Make) -> None:
    cluster = make_cluster(3)

    def fault() -> float:
        leader = cluster.leader()
        moment = time.monotonic()
        cluster.isolate(leader)  # from its peers; clients still reach it
        time.sleep(5.0)
        old = cluster.status(leader)
        assert old is not None and old["role"] != "leader", "a cut-off leader kept leading"
        return moment

    run_drill(cluster, fault, seed=4)


def test_isolated_follower_catches_up(make_cluster: Make) -> None:
    cluster = make_cluster(3)

    def fault() -> float:
        follower = cluster.followers()[0]
        moment = time.monotonic()
        cluster.isolate(follower)
        time.sleep(4.0)
        view = cluster.status(follower)
        assert view is not None and view["role"] != "leader"
        return moment

    run_drill(cluster, fault, seed=5)


def test_lossy_network(make_cluster: Make) -> None:
    cluster = make_cluster(3)

    def fault() -> float:
        moment = time.monotonic()
        cluster.lossy(drop=0.2, duplicate=0.2, delay=0.05)
        time.sleep(6.0)
        cluster.heal()
        return moment

    result = run_drill(cluster, fault, seed=7)
    assert result["counts"].get("write-ok", 0) > 10  # type: ignore[union-attr]


def test_flapping_partitions(make_cluster: Make) -> None:
    cluster = make_cluster(3)
    rng = random.Random(8)

    def fault() -> float:
        moment = time.monotonic()
        for _ in range(4):
            nodes = list(cluster.nodes)
            rng.shuffle(nodes)
            cut = rng.randint(1, 2)
            cluster.split([nodes[:cut], nodes[cut:]])
            time.sleep(rng.uniform(1.5, 3.0))
        cluster.heal()
        return moment

    run_drill(cluster, fault, seed=8, settle=3.0)


def test_all_down_then_all_up(make_cluster: Make) -> None:
    cluster = make_cluster(3)

    def fault() -> float:
        moment = time.monotonic()
        for node_id in list(cluster.nodes):
            cluster.kill(node_id)
        time.sleep(0.5)
        for node_id in list(cluster.nodes):
            cluster.restart(node_id)
        return moment

    run_drill(cluster, fault, seed=6, settle=4.0)


def test_torn_tail_on_one_node(make_cluster: Make) -> None:
    cluster = make_cluster(3)
    keys = make_registers(cluster, 2)
    leader = cluster.leader()
    victim = cluster.followers()[0]
    with cluster.client(leader) as api:
        for n in range(30):
            api.patch(f"/libraries/{keys[n % 2]}", json={"description": f"v{n}"})
    cluster.converged()
    cluster.kill(victim)
    segment = sorted((cluster.nodes[victim].data_dir / "wal").glob("*.wal"))[-1]
    with open(segment, "ab") as handle:  # a write past what was synced, torn by a power cut
        handle.write(b"\x40\x00\x00\x00\x11\x22\x33\x44half a frame")
    cluster.restart(victim, wait=True)
    assert "cutting a torn tail" in cluster.nodes[victim].log()
    view = cluster.status(victim)
    assert view is not None and view["recovery"]["lost_tail"]
    digest = cluster.converged()
    assert len(digest) == 64
    # once the leader has caught it up, it votes again
    deadline = time.monotonic() + 20
    while (view := cluster.status(victim)) is None or view["waits_for_newer_leader"]:
        assert time.monotonic() < deadline, f"{victim} still waits after catching up"
        time.sleep(0.1)
    assert not (cluster.nodes[victim].data_dir / "lost-tail").exists()


def test_lagging_follower_gets_a_snapshot(make_cluster: Make) -> None:
    cluster = make_cluster(3, "--snapshot-every", "30", "--segment-bytes", "8192")
    keys = make_registers(cluster, 1)
    leader = cluster.leader()
    behind = cluster.followers()[0]
    cluster.kill(behind)
    with cluster.client(leader) as api:
        for n in range(150):  # several snapshots; the leader compacts its log
            response = api.patch(f"/libraries/{keys[0]}", json={"description": f"v{n}"})
            assert response.status_code == 200
    view = cluster.status(leader)
    assert view is not None and view["wal"]["first_index"] > 1
    cluster.restart(behind, wait=True)
    cluster.converged()
    assert "installed the leader's snapshot" in cluster.nodes[behind].log()


def test_client_retry_applies_once(make_cluster: Make) -> None:
    cluster = make_cluster(3)
    leader = cluster.leader()
    with cluster.client(leader) as api:
        library = api.post("/libraries", json={"name": "retry", "dimension": 2}).json()
        body = {"chunks": [{"text": "only once", "embedding": [1.0, 0.0]}]}
        key = {"Idempotency-Key": "doc-retry-1"}
        first = api.post(f"/libraries/{library['id']}/documents", json=body, headers=key)
        assert first.status_code == 201
    cluster.kill(leader)  # the client never heard back, say; it retries elsewhere
    new_leader = cluster.leader(timeout=30)
    with cluster.client(new_leader) as api:
        again = api.post(f"/libraries/{library['id']}/documents", json=body, headers=key)
        assert again.status_code == 201 and again.json()["id"] == first.json()["id"]
        info = api.get(f"/libraries/{library['id']}").json()
        assert info["document_count"] == 1
