"""Nothing an index does starves the Raft loop.

An index rebuild (PATCH of index_type) runs in the applier on every replica
at once. The kernels release the GIL and the new index is built beside the
old one, so during the rebuild the leader keeps heartbeating (no election,
the same leader and term afterwards), /health keeps answering, and searches
of the library being rebuilt go on.
"""

from __future__ import annotations

import re
import threading
import time

import httpx
import numpy as np
import pytest

from tests.cluster_harness import ClusterProcesses

pytestmark = pytest.mark.cluster
DIM = 32
ROWS = 8000


def _histogram(url: str, name: str) -> dict[str, float]:
    text = httpx.get(url + "/metrics", timeout=10).text
    return {
        bound: float(count)
        for bound, count in re.findall(rf'^{name}_bucket{{le="([^"]+)"}} ([0-9.e+]+)$', text, re.M)
    }


def test_an_index_rebuild_does_not_stop_heartbeats_or_health(make_cluster: object) -> None:
    cluster: ClusterProcesses = make_cluster(3)  # type: ignore[operator]
    leader_id = cluster.leader()
    leader = cluster.nodes[leader_id]
    vectors = np.random.default_rng(7).standard_normal((ROWS, DIM)).astype(np.float32)
    with leader.client() as api:
        library_id = api.post("/libraries", json={"name": "rebuild", "dimension": DIM}).json()["id"]
        for start in range(0, ROWS, 500):
            chunks = [{"text": f"r{n}", "embedding": vectors[n].tolist()}
                      for n in range(start, start + 500)]  # fmt: skip
            created = api.post(f"/libraries/{library_id}/documents", json={"chunks": chunks})
            assert created.status_code == 201, created.text
    cluster.converged(timeout=60)
    term = cluster.status(leader_id)["term"]  # type: ignore[index]
    follower = cluster.followers()[0]
    before = _histogram(cluster.nodes[follower].url, "shoal_raft_leader_gap_seconds")

    health_seconds: list[float] = []
    searches: list[int] = []
    stop = threading.Event()

    def probe() -> None:
        query = {"query_embedding": vectors[0].tolist(), "k": 5}
        with httpx.Client(timeout=30) as client:
            while not stop.is_set():
                for node in cluster.nodes.values():
                    started = time.perf_counter()
                    client.get(node.url + "/health")
                    health_seconds.append(time.perf_counter() - started)
                searched = client.post(f"{leader.url}/libraries/{library_id}/query", json=query)
                searches.append(searched.status_code)
                time.sleep(0.02)

    prober = threading.Thread(target=probe)
    prober.start()
    try:
        started = time.perf_counter()
        with leader.client() as api:
            patched = api.patch(
                f"/libraries/{library_id}",
                json={"index_type": "hnsw", "index_params": {"M": 24, "ef_construction": 400}},
                timeout=300,
            )
        took = time.perf_counter() - started
        assert patched.status_code == 200, patched.text
        cluster.converged(timeout=120)
    finally:
        stop.set()
        prober.join(60)
    assert took > 1.0, f"the rebuild took {took:.2f}s, too short to tell"
    assert cluster.leader() == leader_id
    assert cluster.status(leader_id)["term"] == term  # type: ignore[index]
    assert set(searches) == {200}
    # Searches of the library went on during the rebuild, not only after it.
    assert len(searches) >= 5, searches
    # Holding the GIL, a rebuild stops /health on every replica for its whole length.
    assert max(health_seconds) < took / 2, (max(health_seconds), took)
    after = _histogram(cluster.nodes[follower].url, "shoal_raft_leader_gap_seconds")
    long_gaps = after["+Inf"] - after["1.0"] - (before["+Inf"] - before["1.0"])
    assert long_gaps == 0, f"{long_gaps:.0f} gaps of over a second between leader messages"
