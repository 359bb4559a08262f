"""Clocks that disagree, jump and run at different rates (libfaketime).

Each node runs under libfaketime with a timestamp file of its own, which
the drill rewrites to move that node's clock while it runs.

- Wall clocks a day apart, jumping under load, with leaders changing: ids
  and timestamps come from whichever node leads, yet listings must follow
  the log and a cursor walk must see every document once.
- Monotonic clocks running at different rates (0.7x to 1.5x): timers and
  elections skew, safety must not.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.cluster.register_workload import (
    LeaderMonitor,
    RegisterWorkload,
    make_registers,
    report_counts,
    verify,
)
from tests.cluster_harness import ClusterProcesses

LIBFAKETIME = Path("/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1")
pytestmark = [
    pytest.mark.cluster,
    pytest.mark.skipif(not LIBFAKETIME.exists(), reason="libfaketime (Debian faketime) missing"),
]


class SkewedCluster:
    def __init__(self, root: Path, clocks: dict[str, str], monotonic: bool) -> None:
        self.cluster = ClusterProcesses(root / "c", len(clocks))
        root.mkdir(parents=True, exist_ok=True)
        self.files: dict[str, Path] = {}
        for node_id, setting in clocks.items():
            clock_file = root / f"clock-{node_id}"
            clock_file.write_text(setting + "\n")
            self.files[node_id] = clock_file
            env = {"LD_PRELOAD": str(LIBFAKETIME), "FAKETIME_TIMESTAMP_FILE": str(clock_file),
                   "FAKETIME_CACHE_DURATION": "1"}  # fmt: skip
            if not monotonic:
                env["FAKETIME_DONT_FAKE_MONOTONIC"] = "1"
            self.cluster.nodes[node_id].env.update(env)

    def set_clock(self, node_id: str, setting: str) -> None:
        self.files[node_id].write_text(setting + "\n")


@pytest.fixture
def make_skewed(tmp_path: Path) -> Iterator[object]:
    made: list[SkewedCluster] = []

    def make(clocks: dict[str, str], monotonic: bool) -> SkewedCluster:
        skewed = SkewedCluster(tmp_path / f"s{len(made)}", clocks, monotonic)
        made.append(skewed)
        skewed.cluster.start()
        return skewed

    yield make
    for skewed in made:
        skewed.cluster.stop()


def _add(cluster: ClusterProcesses, library: str, title: str) -> int:
    """Add one document through whichever node leads; its log index."""
    deadline = time.monotonic() + 60
    while True:
        assert time.monotonic() < deadline, f"could not write {title}"
        try:
            leader = cluster.leader(timeout=20)
            with cluster.client(leader) as api:
                response = api.post(
                    f"/libraries/{library}/documents",
                    json={"metadata": {"title": title},
                          "chunks": [{"text": title, "embedding": [1.0, 0.5]}]},
                    headers={"Idempotency-Key": f"doc-{title}"},
                )  # fmt: skip
        except (httpx.HTTPError, TimeoutError):
            time.sleep(0.2)
            continue
        if response.status_code == 201:
            return int(response.headers["X-Shoal-Index"])
        time.sleep(0.2)


def _page(cluster: ClusterProcesses, library: str, cursor: str | None) -> dict[str, Any]:
    """One linearizable page, from whichever node leads once the cluster has
    settled after the last restart (until then: 503, so ask again)."""
    params: dict[str, str | int] = {"limit": 7, "consistency": "linearizable"}
    if cursor:
        params["cursor"] = cursor
    deadline = time.monotonic() + 60
    last = "no answer"
    while True:
        try:
            with cluster.client(cluster.leader(timeout=20)) as api:
                response = api.get(f"/libraries/{library}/documents", params=params)
            if response.status_code == 200:
                page: dict[str, Any] = response.json()
                return page
            last = f"{response.status_code} {response.text}"
        except (httpx.HTTPError, TimeoutError) as exc:
            last = repr(exc)
        assert time.monotonic() < deadline, f"no page of the listing: {last}"
        time.sleep(0.2)


def _walk(cluster: ClusterProcesses, library: str) -> list[str]:
    titles: list[str] = []
    cursor: str | None = None
    while True:
        page = _page(cluster, library, cursor)
        titles += [item["metadata"]["title"] for item in page["items"]]
        cursor = page["next_cursor"]
        if not cursor:
            return titles


def test_wall_clocks_a_day_apart_and_jumping(make_skewed: object) -> None:
    skewed: SkewedCluster = make_skewed(  # type: ignore[operator]
        {"n1": "+0", "n2": "-1d", "n3": "+1d"}, monotonic=False
    )
    cluster = skewed.cluster
    with cluster.client(cluster.leader()) as api:
        library = api.post("/libraries", json={"name": "skew", "dimension": 2}).json()["id"]
    written: list[tuple[int, str]] = []
    jumps = ["+2d", "-3d", "+0", "-1h", "+5d"]
    for round_ in range(5):
        for n in range(8):
            title = f"r{round_}-{n}"
            written.append((_add(cluster, library, title), title))
        leader = cluster.leader()
        skewed.set_clock(leader, jumps[round_])  # its clock jumps, then it loses office
        cluster.kill(leader)
        cluster.restart(leader)
    in_log_order = [title for _, title in sorted(written)]
    assert _walk(cluster, library) == in_log_order
    cluster.converged(timeout=60)
    report_counts({"write-ok": len(written)})


def test_monotonic_clocks_at_different_rates(make_skewed: object) -> None:
    skewed: SkewedCluster = make_skewed(  # type: ignore[operator]
        {"n1": "+0 x1", "n2": "+0 x1.5", "n3": "+0 x0.7"}, monotonic=True
    )
    cluster = skewed.cluster
    keys = make_registers(cluster, 3)
    monitor = LeaderMonitor(cluster).start()
    workload = RegisterWorkload(cluster, keys, clients=3, seed=9).start()
    try:
        time.sleep(3.0)
        leader = cluster.leader()
        cluster.kill(leader)
        time.sleep(3.0)
        cluster.restart(leader)
        time.sleep(3.0)
    finally:
        ops = workload.stop()
    verify(cluster, ops, keys, monitor)
    monitor.stop()
    acknowledged = sum(1 for op in ops if op.kind == "write" and op.outcome == "ok")
    assert acknowledged > 20
