"""Three real nodes: replication, redirects, read levels, the cluster view."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from tests.cluster_harness import ClusterProcesses

pytestmark = pytest.mark.cluster
Make = Callable[..., ClusterProcesses]


def test_writes_replicate_and_followers_serve_reads(make_cluster: Make) -> None:
    cluster = make_cluster(3)
    leader = cluster.leader()
    with cluster.client(leader) as api:
        lib = api.post("/libraries", json={"name": "replicated", "dimension": 3}).json()
        doc = api.post(
            f"/libraries/{lib['id']}/documents",
            json={"chunks": [{"text": "hello", "embedding": [1, 0, 0]}]},
        )
        assert doc.status_code == 201, doc.text
        index = int(doc.headers["X-Shoal-Index"])
    digest = cluster.converged()
    for follower in cluster.followers():
        with cluster.client(follower) as api:
            response = api.post(
                f"/libraries/{lib['id']}/query",
                json={"query_embedding": [1, 0, 0], "k": 1},
                headers={"X-Shoal-Min-Index": str(index)},
            )
            assert response.status_code == 200
            assert response.json()["results"][0]["text"] == "hello"
            assert response.headers["X-Shoal-Node"] == follower
    assert len(digest) == 64


def test_writes_to_a_follower_redirect_to_the_leader(make_cluster: Make) -> None:
    cluster = make_cluster(3)
    leader = cluster.leader()
    follower = cluster.followers()[0]
    with cluster.client(follower) as api:
        response = api.post("/libraries", json={"name": "redirected"})
        assert response.status_code == 307
        assert response.headers["Location"] == cluster.nodes[leader].url + "/libraries"
        assert response.json()["leader_id"] == leader
    with httpx.Client(base_url=cluster.nodes[follower].url, follow_redirects=True) as api:
        created = api.post("/libraries", json={"name": "followed"})
        assert created.status_code == 201 and created.headers["X-Shoal-Node"] == leader


def test_session_and_linearizable_reads_on_followers(make_cluster: Make) -> None:
    cluster = make_cluster(3)
    leader = cluster.leader()
    follower = cluster.followers()[0]
    with cluster.client(leader) as writer, cluster.client(follower) as reader:
        for n in range(20):
            made = writer.post("/libraries", json={"name": f"lib-{n}"})
            index = made.headers["X-Shoal-Index"]
            # read-your-writes on another node
            seen = reader.get(
                f"/libraries/{made.json()['id']}", headers={"X-Shoal-Min-Index": index}
            )
            assert seen.status_code == 200, seen.text
        renamed = writer.patch(f"/libraries/{made.json()['id']}", json={"name": "last"})
        assert renamed.status_code == 200
        linear = reader.get(
            f"/libraries/{made.json()['id']}", params={"consistency": "linearizable"}
        )
        assert linear.status_code == 200 and linear.json()["name"] == "last"
        too_far = reader.get("/libraries", headers={"X-Shoal-Min-Index": "999999"})
        assert too_far.status_code == 503 and "did not reach 999999" in too_far.json()["detail"]


def test_cluster_view_and_secret(make_cluster: Make) -> None:
    cluster = make_cluster(3)
    leader = cluster.leader()
    with cluster.client(leader) as api:
        api.post("/libraries", json={"name": "view"})
        cluster.converged()
        view = api.get("/cluster").json()
        assert view["role"] == "leader" and view["leader_id"] == leader
        assert {p["id"] for p in view["peers"]} == set(cluster.nodes) - {leader}
        assert all(p["reachable"] and p["lag"] == 0 for p in view["peers"])
        denied = api.post("/_cluster/raft", content=b"\x80")
        assert denied.status_code == 403
        garbage = api.post(
            "/_cluster/raft",
            content=b"\x80",
            headers={"X-Shoal-Cluster-Secret": "test-cluster-secret"},
        )
        assert garbage.status_code == 400
    for follower in cluster.followers():
        view = cluster.status(follower)
        assert view is not None and view["role"] == "follower" and view["leader_id"] == leader
    _every_node_shows_the_leaders_view_of_progress(cluster, leader)


def _progress_of(cluster: ClusterProcesses, node: str) -> dict[str, dict[str, Any]]:
    view = cluster.status(node)
    assert view is not None and view["progress"] is not None, view
    progress = view["progress"]
    assert progress["leader_id"] == view["leader_id"] and progress["term"] == view["term"]
    return {member["id"]: member for member in progress["members"]}


def _every_node_shows_the_leaders_view_of_progress(cluster: ClusterProcesses, leader: str) -> None:
    """Only the leader knows how far each log matches; its appends carry that
    to the followers, so every node's /cluster shows it."""
    deadline = time.monotonic() + 10
    while True:
        seen = {node: _progress_of(cluster, node) for node in cluster.nodes}
        if all(m["lag"] == 0 for members in seen.values() for m in members.values()):
            break
        assert time.monotonic() < deadline, seen
        time.sleep(0.1)
    assert all(set(members) == set(cluster.nodes) for members in seen.values()), seen
    paused, watcher = cluster.followers()
    cluster.pause(paused)
    try:
        with cluster.client(leader) as api:
            for n in range(5):
                assert api.post("/libraries", json={"name": f"unseen-{n}"}).status_code == 201
        time.sleep(0.5)  # a few heartbeats: the view reaches the watcher
        from_watcher = _progress_of(cluster, watcher)
        assert from_watcher[paused]["lag"] >= 5, from_watcher
        assert from_watcher[paused]["last_contact_seconds"] >= 0.4, from_watcher
        assert from_watcher[watcher]["lag"] == 0 and from_watcher[leader]["lag"] == 0
    finally:
        cluster.resume(paused)
