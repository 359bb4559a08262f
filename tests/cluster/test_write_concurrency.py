"""Many writes in flight at once, on real processes.

A burst of small writes from 16 clients into one library is group-committed
(fewer fsyncs than entries on the leader), and writes that race each other
(chunks added to a document while it is deleted) end the same way on every
replica: each answer is a success or a clear 404, never a 500, and the
digests agree.
"""

from __future__ import annotations

import re
import threading
from collections import Counter

import httpx
import pytest

from tests.cluster_harness import ClusterProcesses

pytestmark = pytest.mark.cluster
CLIENTS = 16
WRITES_EACH = 12


def _metric(url: str, name: str) -> float:
    text = httpx.get(url + "/metrics", timeout=10).text
    found = re.search(rf"^{name}(?:{{[^}}]*}})? ([0-9.e+]+)$", text, re.MULTILINE)
    assert found is not None, f"{name} is not in /metrics"
    return float(found.group(1))


def _in_parallel(work: list[tuple[str, str, dict[str, object] | None]], url: str) -> list[int]:
    """Run (method, path, body) requests from CLIENTS threads; their status codes."""
    codes: list[int] = []
    lock = threading.Lock()
    cursor = iter(work)
    start = threading.Barrier(CLIENTS)

    def client() -> None:
        with httpx.Client(base_url=url, timeout=30) as api:
            start.wait()
            while True:
                with lock:
                    item = next(cursor, None)
                if item is None:
                    return
                method, path, body = item
                code = api.request(method, path, json=body).status_code
                with lock:
                    codes.append(code)

    threads = [threading.Thread(target=client) for _ in range(CLIENTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    return codes


def test_a_burst_of_writes_from_16_clients_shares_fsyncs(make_cluster: object) -> None:
    cluster: ClusterProcesses = make_cluster(3)  # type: ignore[operator]
    leader = cluster.nodes[cluster.leader()]
    with leader.client() as api:
        library_id = api.post("/libraries", json={"name": "burst", "dimension": 4}).json()["id"]
    entries = _metric(leader.url, "shoal_wal_entries_total")
    fsyncs = _metric(leader.url, "shoal_wal_fsyncs_total")
    body = {"chunks": [{"text": "tiny", "embedding": [1.0, 0.0, 0.5, 0.25]}]}
    work = [("POST", f"/libraries/{library_id}/documents", body)] * (CLIENTS * WRITES_EACH)
    codes = _in_parallel(work, leader.url)
    assert Counter(codes) == {201: CLIENTS * WRITES_EACH}
    written = _metric(leader.url, "shoal_wal_entries_total") - entries
    synced = _metric(leader.url, "shoal_wal_fsyncs_total") - fsyncs
    assert written >= CLIENTS * WRITES_EACH
    # One fsync per write would make this 1.0; concurrent writes share them.
    assert written / synced > 1.5, f"{written:.0f} entries in {synced:.0f} fsyncs"
    cluster.converged()
    with cluster.client(cluster.followers()[0]) as api:
        counts = api.get(f"/libraries/{library_id}").json()
    assert counts["document_count"] == CLIENTS * WRITES_EACH, counts


def test_writes_racing_a_delete_end_the_same_everywhere(make_cluster: object) -> None:
    cluster: ClusterProcesses = make_cluster(3)  # type: ignore[operator]
    leader = cluster.nodes[cluster.leader()]
    with leader.client() as api:
        library_id = api.post("/libraries", json={"name": "race", "dimension": 4}).json()["id"]
        documents = [
            api.post(f"/libraries/{library_id}/documents",
                     json={"chunks": [{"text": "first", "embedding": [1.0, 0, 0, 0]}]}).json()["id"]
            for _ in range(4)
        ]  # fmt: skip
    work: list[tuple[str, str, dict[str, object] | None]] = []
    for round_ in range(10):
        for document_id in documents:
            chunk = {"text": f"r{round_}", "embedding": [0.5, 1.0, 0.0, round_ / 10]}
            path = f"/libraries/{library_id}/documents/{document_id}/chunks"
            work.append(("POST", path, {"chunks": [chunk]}))
        if round_ == 4:
            work += [("DELETE", f"/libraries/{library_id}/documents/{d}", None) for d in documents]
    codes = _in_parallel(work, leader.url)
    assert set(codes) <= {201, 204, 404}, Counter(codes)
    assert Counter(codes)[204] == len(documents)
    digest = cluster.converged()
    assert digest
    with cluster.client(cluster.followers()[0]) as api:
        for document_id in documents:
            assert api.get(f"/libraries/{library_id}/documents/{document_id}").status_code == 404
