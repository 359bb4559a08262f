"""Three real nodes: replication, redirects, read levels, the cluster view."""

from __future__ import annotations

from collections.abc import Callable

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
