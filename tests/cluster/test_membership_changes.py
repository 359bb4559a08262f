"""Membership changes on real processes (issue #13): nodes join as learners
(``shoal serve --join``), are promoted, and are removed, one change at a
time through the log, while a register workload runs; a leader is killed in
the middle of a change. The history checker, one leader per term and equal
digests close the drill."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Callable

import httpx
import pytest

from tests.cluster.register_workload import LeaderMonitor, RegisterWorkload, make_registers, verify
from tests.cluster_harness import SECRET, SECRET_HEADER, ClusterProcesses
from tests.harness import REPO, NodeProcess, free_port

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(600)]
Make = Callable[..., ClusterProcesses]


def _shoal(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "node.cli", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=120)  # fmt: skip


def _urls(cluster: ClusterProcesses) -> str:
    return ",".join(node.url for node in cluster.nodes.values())


def _members(cluster: ClusterProcesses) -> dict[str, bool]:
    view = cluster.status(cluster.leader())
    assert view is not None
    return {m["id"]: m["voter"] for m in view["members"]}


def _until(check: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except (httpx.HTTPError, TypeError, KeyError):
            pass
        time.sleep(0.1)
    raise AssertionError(f"not within {timeout}s: {what}")


def _join(cluster: ClusterProcesses, node_id: str) -> NodeProcess:
    node = NodeProcess(
        cluster.root / node_id, "--join", _urls(cluster), node_id=node_id,
        env={"SHOAL_CLUSTER_SECRET": SECRET, "SHOAL_FAULT_INJECTION": "1",
             "SHOAL_ELECTION_TIMEOUT": "1.0"},
    )  # fmt: skip
    node.port = free_port()
    node.start(wait=True)
    cluster.nodes[node_id] = node
    return node


def test_grow_three_to_five_and_back_under_load_with_a_leader_killed_mid_change(
    make_cluster: Make,
) -> None:
    cluster = make_cluster(3)
    # Many registers: the drill is long, and the history checker's search is
    # as deep as one register's history.
    keys = make_registers(cluster, 12)
    monitor = LeaderMonitor(cluster).start()
    workload = RegisterWorkload(cluster, keys, clients=3, seed=13).start()
    popped: list[NodeProcess] = []
    try:
        time.sleep(1.0)
        # n4 joins as a learner and serves reads without voting.
        n4 = _join(cluster, "n4")
        assert _members(cluster)["n4"] is False
        _until(lambda: n4.cluster()["role"] == "learner", "n4 is a learner")
        with n4.client() as http:
            assert http.get("/libraries", params={"consistency": "linearizable"}).status_code == 200
        done = _shoal("cluster", "promote", "n4", "--url", _urls(cluster),
                      "--cluster-secret", SECRET)  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert _members(cluster)["n4"] is True
        # n5 joins; its promotion is under way when the leader is killed.
        _join(cluster, "n5")
        leader = cluster.leader()
        promoting = threading.Thread(
            target=_shoal,
            args=("cluster", "promote", "n5", "--url", _urls(cluster), "--cluster-secret", SECRET),
        )
        promoting.start()
        time.sleep(0.05)
        cluster.kill(leader)
        promoting.join(150)
        _until(lambda: cluster.leader(exclude=(leader,)) is not None, "a new leader")
        cluster.restart(leader, wait=True)
        # The change committed or was lost with the old leader: ask again.
        again = _shoal("cluster", "promote", "n5", "--url", _urls(cluster),
                       "--cluster-secret", SECRET)  # fmt: skip
        assert again.returncode == 0, again.stderr
        assert _members(cluster) == dict.fromkeys(["n1", "n2", "n3", "n4", "n5"], True)
        # Five voters: any two may be down.
        for node_id in [n for n in cluster.nodes if n != cluster.leader()][:2]:
            cluster.kill(node_id)
        time.sleep(1.0)
        for node_id in cluster.nodes:
            if node_id not in cluster.running():
                cluster.restart(node_id, wait=True)
        # Back to three: n5, then the leader itself (it hands over on its own).
        for gone in ("n5", cluster.leader()):
            done = _shoal("cluster", "remove", gone, "--url", _urls(cluster),
                          "--cluster-secret", SECRET)  # fmt: skip
            assert done.returncode == 0, done.stderr
            removed = cluster.nodes.pop(gone)  # no longer one of the cluster's views
            popped.append(removed)
            _until(lambda g=gone: g not in _members(cluster), f"{gone} removed")
            # The leader saw its removal commit and stepped aside; a removed
            # follower is sent the log until it learned the same.
            _until(lambda r=removed: r.cluster()["role"] == "removed", f"{gone} stepped aside")
            assert removed.stop() == 0
        assert len(_members(cluster)) == 3 and all(_members(cluster).values())
        time.sleep(1.0)
    finally:
        ops = workload.stop()
        for node in popped:
            node.kill()
        for node_id in cluster.nodes:
            if node_id not in cluster.running():
                cluster.restart(node_id, wait=True)
    verify(cluster, ops, keys, monitor)
    monitor.stop()


def test_bad_changes_are_refused_with_a_reason(make_cluster: Make) -> None:
    cluster = make_cluster(3)
    url = cluster.nodes[cluster.leader()].url
    refused = httpx.post(url + "/admin/members", json={"id": "n9", "url": "http://127.0.0.1:1"},
                         timeout=10)  # fmt: skip
    assert refused.status_code == 403
    taken = httpx.post(url + "/admin/members", headers=SECRET_HEADER, timeout=10,
                       json={"id": "n1", "url": "http://127.0.0.1:1"})  # fmt: skip
    assert taken.status_code == 409 and "already a member" in taken.json()["detail"]
    # A node wiped and joining again under a voter's id and URL: admitted, it
    # would vote without the log it acknowledged (and the votes it gave).
    voter = next(n for n in cluster.nodes if n != cluster.leader())
    again = httpx.post(url + "/admin/members", headers=SECRET_HEADER, timeout=10,
                       json={"id": voter, "url": cluster.nodes[voter].url})  # fmt: skip
    assert again.status_code == 409, again.text
    assert f"{voter} is a voter" in again.json()["detail"]
    assert f"shoal cluster remove {voter}" in again.json()["detail"]
    missing = httpx.post(url + "/admin/members/n9/promote", headers=SECRET_HEADER, timeout=10)
    assert missing.status_code == 404
    added = httpx.post(url + "/admin/members", headers=SECRET_HEADER, timeout=30,
                       json={"id": "n9", "url": f"http://127.0.0.1:{free_port()}"})  # fmt: skip
    assert added.status_code == 200, added.text
    # A learner that never started cannot be promoted: it has not caught up.
    stuck = httpx.post(url + "/admin/members/n9/promote", params={"wait": 1},
                       headers=SECRET_HEADER, timeout=60)  # fmt: skip
    assert stuck.status_code == 503 and "catching up" in stuck.json()["detail"]
    removed = httpx.delete(url + "/admin/members/n9", headers=SECRET_HEADER, timeout=30)
    assert removed.status_code == 200 and "n9" not in [m["id"] for m in removed.json()["members"]]
