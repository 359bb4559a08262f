"""Leadership transfer on real processes: by the operator (``POST
/admin/leadership``, ``shoal cluster transfer-leader``) and by a leader
being stopped with SIGTERM, so a rolling restart costs no election timeout
and no client write fails (issue #13)."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable

import httpx
import pytest

from tests.cluster.sdk_writer import SdkWriter
from tests.cluster_harness import SECRET, SECRET_HEADER, ClusterProcesses
from tests.harness import REPO

pytestmark = pytest.mark.cluster
Make = Callable[..., ClusterProcesses]


def _shoal(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "node.cli", *args], cwd=REPO, capture_output=True, text=True,
        timeout=60,
    )  # fmt: skip


def _urls(cluster: ClusterProcesses) -> str:
    return ",".join(node.url for node in cluster.nodes.values())


def _caught_up(cluster: ClusterProcesses, node_id: str, timeout: float = 30.0) -> None:
    """Until ``node_id`` has applied what the leader had committed when we
    asked (writes go on meanwhile, so the digests never stand still)."""
    target = cluster.status(cluster.leader())["commit_index"]  # type: ignore[index]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        view = cluster.status(node_id)
        if view and view["applied_index"] >= target:
            return
        time.sleep(0.1)
    raise AssertionError(f"{node_id} did not catch up to {target}: {cluster.status(node_id)}")


def test_the_operator_moves_the_leader_with_the_cli_and_the_endpoint(make_cluster: Make) -> None:
    cluster = make_cluster(3)
    leader = cluster.leader()
    target, other = [n for n in cluster.nodes if n != leader]
    term = cluster.status(leader)["term"]  # type: ignore[index]
    # Given only a follower's URL: the CLI finds the leader itself.
    done = _shoal("cluster", "transfer-leader", target, "--url", cluster.nodes[other].url,
                  "--cluster-secret", SECRET)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert f"{leader} handed leadership to {target}" in done.stdout
    assert f"term {term} -> {term + 1}" in done.stdout
    assert cluster.leader() == target
    assert "MEMBER" in done.stdout and "LAG" in done.stdout
    assert all(n in done.stdout for n in cluster.nodes)

    url = cluster.nodes[target].url
    refused = httpx.post(url + "/admin/leadership", json={"target": leader}, timeout=10)
    assert refused.status_code == 403  # the cluster secret is required
    unknown = httpx.post(url + "/admin/leadership", json={"target": "n9"},
                         headers=SECRET_HEADER, timeout=10)  # fmt: skip
    assert unknown.status_code == 422 and "not a voting member" in unknown.json()["detail"]
    follower = httpx.post(cluster.nodes[leader].url + "/admin/leadership", json={"target": leader},
                          headers=SECRET_HEADER, timeout=10)  # fmt: skip
    assert follower.status_code == 307  # a follower sends the operator to the leader
    back = httpx.post(url + "/admin/leadership", json={}, headers=SECRET_HEADER, timeout=30)
    assert back.status_code == 200, back.text
    assert back.json()["leader_id"] in (leader, other)
    assert cluster.leader() == back.json()["leader_id"]

    status = _shoal("cluster", "status", "--url", _urls(cluster))
    assert status.returncode == 0 and "cluster " in status.stdout, status.stderr
    missing_secret = _shoal("cluster", "transfer-leader", leader, "--url", url)
    assert missing_secret.returncode == 1 and "secret" in missing_secret.stderr


def test_a_rolling_restart_hands_over_and_fails_no_write(make_cluster: Make) -> None:
    cluster = make_cluster(3)
    cluster.leader()
    writer = SdkWriter(_urls(cluster), "rolling-restart").start()
    stopped_leaders = []
    try:
        time.sleep(1.0)
        # Followers first, the leader last, as an operator would roll them.
        leader = cluster.leader()
        order = [n for n in cluster.nodes if n != leader] + [leader]
        for node_id in order:
            was_leader = cluster.leader() == node_id
            node = cluster.nodes[node_id]
            assert node.stop() == 0, node.log()
            if was_leader:
                stopped_leaders.append(node_id)
                assert "handed leadership to" in node.log(), node.log()
            time.sleep(0.5)
            cluster.restart(node_id, wait=True)
            _caught_up(cluster, node_id)
        time.sleep(1.0)
    finally:
        writer.stop()
    assert stopped_leaders, "the roll never stopped a leader"
    assert not writer.failures, writer.failures[:5]
    acknowledged = writer.stop_and_check()
    assert acknowledged > 20
    cluster.converged()
    latencies = sorted(seconds for _, seconds in writer.latencies)
    p99 = latencies[int(0.99 * (len(latencies) - 1))]
    print(f"rolling restart: {acknowledged} writes, p50 {latencies[len(latencies) // 2]:.3f} s, "
          f"p99 {p99:.3f} s, max {latencies[-1]:.3f} s")  # noqa: T201  # fmt: skip
