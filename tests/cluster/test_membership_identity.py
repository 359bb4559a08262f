"""Cluster identity on real processes: a node answers only members of its
own cluster, and the member list stored in its data directory wins over
``--peers`` (issue #13: a rolling restart with a longer list could elect
two leaders; a node restarted without ``--peers`` elected itself)."""

from __future__ import annotations

import re
import time
from collections.abc import Callable

import httpx
import pytest

from replication.membership import CLUSTER_HEADER
from replication.messages import VoteRequest, encode
from tests.cluster_harness import SECRET, SECRET_HEADER, ClusterProcesses
from tests.harness import NodeProcess, free_port

pytestmark = pytest.mark.cluster
Make = Callable[..., ClusterProcesses]


def _refused(node: NodeProcess, reason: str) -> float:
    text = httpx.get(node.url + "/metrics", timeout=10).text
    found = re.search(rf'shoal_peer_requests_refused_total{{reason="{reason}"}} (\S+)', text)
    assert found, text[-2000:]
    return float(found.group(1))


def _write_library(cluster: ClusterProcesses, name: str) -> str:
    leader = cluster.leader()
    with cluster.client(leader) as http:
        response = http.post("/libraries", json={"name": name, "dimension": 3})
        assert response.status_code == 201, response.text
        return str(response.json()["id"])


def _wait_answering(node: NodeProcess, timeout: float = 60.0) -> None:
    """Until the node answers at all (it may never be ready)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert node.process is not None and node.process.poll() is None, node.log()
        try:
            httpx.get(node.url + "/health", timeout=1.0)
            return
        except httpx.HTTPError:
            time.sleep(0.05)
    raise TimeoutError(node.log())


def _wait_exit(node: NodeProcess, timeout: float = 30.0) -> int:
    assert node.process is not None
    node.process.wait(timeout)
    return node._finish()


def test_a_longer_member_list_on_restart_is_refused_and_cannot_elect_a_second_leader(
    make_cluster: Make,
) -> None:
    cluster = make_cluster(3)
    library = _write_library(cluster, "before-the-roll")
    cluster_id = cluster.status("n1")["cluster_id"]  # type: ignore[index]
    for node in cluster.nodes.values():
        assert node.stop() == 0
    five = f"{cluster.peers},n4=http://127.0.0.1:{free_port()},n5=http://127.0.0.1:{free_port()}"
    env = {"SHOAL_CLUSTER_SECRET": SECRET, "SHOAL_ELECTION_TIMEOUT": "1.0"}
    # The rolling change the docs once described: n1 and n2 keep the old list
    # (2 of 3 is their majority), n3 comes back with five, n4 and n5 are new
    # (3 of 5 would be theirs).
    cluster.restart("n1")
    cluster.restart("n2")
    n3 = cluster.nodes["n3"]
    n3.args = ["--peers", five]
    n3.start(wait=False)
    assert _wait_exit(n3) != 0
    assert "elect two leaders" in n3.log()
    newcomers = []
    for node_id in ("n4", "n5"):
        url = dict(item.split("=", 1) for item in five.split(","))[node_id]
        node = NodeProcess(cluster.root / node_id, "--peers", five, node_id=node_id, env=env)
        node.port = int(url.rsplit(":", 1)[1])
        newcomers.append(node.start(wait=False))
    try:
        for node in newcomers:
            _wait_answering(node)
        leader = cluster.leader(exclude=("n3",))
        deadline = time.monotonic() + 6.0  # several election timeouts for n4 and n5
        while time.monotonic() < deadline:
            for node in newcomers:
                view = node.cluster()
                assert view["role"] != "leader", "a second leader was elected"
                assert view["cluster_id"] != cluster_id
            time.sleep(0.2)
        assert cluster.leader(exclude=("n3",)) == leader
        assert _refused(cluster.nodes["n1"], "other-cluster") > 0
        with cluster.client(leader) as http:
            assert http.get(f"/libraries/{library}").status_code == 200
    finally:
        for node in newcomers:
            node.kill()


def test_a_node_restarted_without_peers_rejoins_its_cluster(make_cluster: Make) -> None:
    cluster = make_cluster(3)
    _write_library(cluster, "kept")
    follower = cluster.followers()[0]
    cluster.kill(follower)
    library = _write_library(cluster, "written-while-it-was-down")
    node = cluster.nodes[follower]
    node.args = []  # no --peers: the stored member list is used
    node.start(wait=True)
    digest = cluster.converged()
    view = node.cluster()
    assert view["role"] == "follower"
    assert [member["id"] for member in view["members"]] == ["n1", "n2", "n3"]
    assert digest == cluster.status(cluster.leader())["state_digest"]  # type: ignore[index]
    with node.client() as http:
        assert http.get(f"/libraries/{library}").status_code == 200


def test_requests_from_another_cluster_or_a_stranger_are_refused(make_cluster: Make) -> None:
    cluster = make_cluster(3)
    leader = cluster.leader()
    node = cluster.nodes[leader]
    cluster_id = node.cluster()["cluster_id"]
    body = encode(VoteRequest(10**6, "n9", 10**6, 10**6, False, 1))
    cases = [
        ({CLUSTER_HEADER: "0123456789abcdef"}, "other-cluster"),
        ({}, "other-cluster"),
        ({CLUSTER_HEADER: cluster_id}, "not-a-member"),
    ]
    for headers, slug in cases:
        before = _refused(node, slug)
        response = httpx.post(
            node.url + "/_cluster/raft", content=body, timeout=10,
            headers={**SECRET_HEADER, **headers, "content-type": "application/msgpack"},
        )  # fmt: skip
        assert response.status_code == 403, response.text
        problem = response.json()
        assert problem["type"].endswith(slug) and "cluster" in problem["detail"]
        assert _refused(node, slug) == before + 1
    # The huge term in the vote request moved nothing.
    assert cluster.leader() == leader
    assert node.cluster()["term"] < 10**6
    # A member that sends no cluster id (a node of an older Shoal, during an
    # upgrade) is answered, and counted.
    member = next(n for n in cluster.nodes if n != leader)
    old_style = httpx.post(
        node.url + "/_cluster/raft", content=encode(VoteRequest(0, member, 0, 0, False, 2)),
        headers={**SECRET_HEADER, "content-type": "application/msgpack"}, timeout=10,
    )  # fmt: skip
    assert old_style.status_code == 200, old_style.text
    text = httpx.get(node.url + "/metrics", timeout=10).text
    assert re.search(r"shoal_peer_requests_without_cluster_id_total [1-9]", text)
    spoofed = httpx.post(
        node.url + "/_cluster/raft", content=encode(VoteRequest(0, member, 0, 0, False, 3)),
        headers={**SECRET_HEADER, CLUSTER_HEADER: cluster_id, "X-Shoal-From": "n9",
                 "content-type": "application/msgpack"}, timeout=10,
    )  # fmt: skip
    assert spoofed.status_code == 400


def test_force_new_cluster_makes_a_cluster_of_one_the_old_members_cannot_reach(
    make_cluster: Make,
) -> None:
    cluster = make_cluster(3)
    library = _write_library(cluster, "survives")
    old_id = cluster.status("n1")["cluster_id"]  # type: ignore[index]
    for node in cluster.nodes.values():
        node.stop()
    alone = cluster.nodes["n1"]
    alone.args = ["--force-new-cluster"]
    alone.start(wait=True)
    view = alone.cluster()
    assert view["role"] == "leader" and view["cluster_id"] != old_id
    assert [member["id"] for member in view["members"]] == ["n1"]
    with alone.client() as http:
        assert http.get(f"/libraries/{library}").status_code == 200
        assert http.post("/libraries", json={"name": "after", "dimension": 3}).status_code == 201
    term = view["term"]
    cluster.restart("n2")
    cluster.restart("n3")
    cluster.leader(exclude=("n1",))  # the old members elect among themselves
    # Their heartbeats and votes still go to n1, which answers none of them.
    deadline = time.monotonic() + 10
    while _refused(alone, "other-cluster") == 0 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _refused(alone, "other-cluster") > 0
    after = alone.cluster()
    assert after["role"] == "leader" and after["term"] == term
