"""kill -9 and damaged logs against real node processes."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import numpy as np
import pytest

from tests.durability.workload import DIM, burst, check_after_crash, wait_for
from tests.harness import NodeProcess
from wal.records import FRAME

pytestmark = pytest.mark.durability

StartNode = Callable[..., NodeProcess]


def new_library(node: NodeProcess, index_type: str = "brute_force") -> str:
    with node.client() as client:
        response = client.post(
            "/libraries", json={"name": "crash", "dimension": DIM, "index_type": index_type}
        )
        assert response.status_code == 201
        return str(response.json()["id"])


@pytest.mark.parametrize("fsync", ["always", "batch", "off"])
def test_kill_9_during_write_burst(start_node: StartNode, tmp_path: Path, fsync: str) -> None:
    data = tmp_path / "data"
    node = start_node("--fsync", fsync, "--snapshot-every", "150", data=data)
    library_id = new_library(node)
    stop = threading.Event()
    results: list = []
    writer = threading.Thread(
        target=lambda: results.extend(burst(node.url, library_id, 6, stop, seed=1))
    )
    writer.start()
    # Kill once a good number of writes are acknowledged, while more are in flight.
    wait_for(lambda: node.cluster()["applied_index"] > 250, timeout=60)
    node.kill()
    stop.set()
    writer.join(60)
    acked = sum(1 for a in results if a.outcome == "ok")
    unknown = sum(1 for a in results if a.outcome == "unknown")
    assert acked > 100 and unknown > 0, (acked, unknown)

    restarted = start_node("--fsync", fsync, data=data)
    with restarted.client() as client:
        present = check_after_crash(client, library_id, results)
    assert acked <= present <= acked + unknown
    status = restarted.cluster()
    assert status["recovery"]["snapshot_index"] > 0  # snapshots were taken during the burst
    # A second restart from the same files reaches the same state.
    digest = status["state_digest"]
    assert restarted.stop() == 0
    again = start_node(data=data)
    assert again.cluster()["state_digest"] == digest


def spread(n: int) -> list[float]:
    """A vector per n, pointing in varied directions (never zero)."""
    return [((n * 31 + j * 17) % 23) - 11 + 0.5 for j in range(DIM)]


def _write_docs(node: NodeProcess, library_id: str, count: int) -> list[str]:
    ids = []
    with node.client() as client:
        for n in range(count):
            response = client.post(
                f"/libraries/{library_id}/documents",
                json={
                    "metadata": {"title": f"doc {n}"},
                    "chunks": [{"text": f"text {n}", "embedding": spread(n)}],
                },
            )
            assert response.status_code == 201
            ids.append(response.json()["id"])
    return ids


def _newest_segment(data: Path) -> Path:
    return sorted((data / "wal").glob("*.wal"))[-1]


# What a crash can leave past the synced end: a frame whose end never reached
# the disk, or a page that did not (zeros).
TORN_WRITES = {
    "partial_frame": FRAME.pack(100, 0) + b"\x94" + b"x" * 30,
    "zeroed_page": b"\0" * 4096,
}


@pytest.mark.parametrize("torn", sorted(TORN_WRITES))
def test_torn_write_past_the_synced_end_is_cut_on_restart(
    start_node: StartNode, tmp_path: Path, torn: str
) -> None:
    data = tmp_path / "data"
    node = start_node(data=data)
    library_id = new_library(node)
    ids = _write_docs(node, library_id, 5)
    assert node.stop() == 0
    with open(_newest_segment(data), "ab") as segment:
        segment.write(TORN_WRITES[torn])

    restarted = start_node(data=data)
    status = restarted.cluster()
    assert status["recovery"]["torn_bytes_cut"] == len(TORN_WRITES[torn])
    assert "cutting a torn tail" in restarted.log()
    with restarted.client() as client:
        present = {
            doc["id"] for doc in client.get(f"/libraries/{library_id}/documents").json()["items"]
        }
        assert present == set(ids)  # every acknowledged write survives
        # the node keeps working after the repair
        assert len(_write_docs(restarted, library_id, 1)) == 1


def _damage(raw: bytearray, where: str) -> None:
    if where == "last_frame_cut_short":
        del raw[-20:]
    elif where == "last_frame_bit_flip":
        raw[-5] ^= 0x10
    else:
        raw[len(raw) // 3] ^= 0xFF


@pytest.mark.parametrize("where", ["last_frame_cut_short", "last_frame_bit_flip", "middle"])
def test_damage_to_acknowledged_writes_refuses_to_start(
    start_node: StartNode, tmp_path: Path, where: str
) -> None:
    data = tmp_path / "data"
    node = start_node(data=data)
    library_id = new_library(node)
    _write_docs(node, library_id, 5)
    assert node.stop() == 0
    segment = _newest_segment(data)
    raw = bytearray(segment.read_bytes())
    _damage(raw, where)
    segment.write_bytes(bytes(raw))
    broken = start_node(data=data, wait=False)
    assert broken.process is not None
    code = broken.process.wait(60)
    assert code != 0
    assert "damaged before the point this node had made durable" in broken.log()
    assert "wipe this node's data directory and let it rejoin from the leader" in broken.log()


@pytest.mark.parametrize("index_type", ["brute_force", "hnsw"])
def test_snapshot_and_replay_reach_the_pre_crash_digest(
    start_node: StartNode, tmp_path: Path, index_type: str
) -> None:
    data = tmp_path / "data"
    # No snapshot when the node goes quiet: this test wants a tail to replay.
    env = {"SHOAL_SEGMENT_BYTES": str(16 * 1024), "SHOAL_SNAPSHOT_WHEN_QUIET": "0"}
    node = start_node("--snapshot-every", "40", data=data, env=env)
    library_id = new_library(node, index_type)
    ids = _write_docs(node, library_id, 120)
    with node.client() as client:
        for doc_id in ids[::7]:
            assert client.delete(f"/libraries/{library_id}/documents/{doc_id}").status_code == 204
        _write_docs(node, library_id, 10)  # reuses freed vector rows
        wait_for(lambda: node.cluster()["snapshot"] is not None, timeout=30)
        before = node.cluster()
        query = {"query_embedding": [0.5] * DIM, "k": 10}
        before_results = client.post(f"/libraries/{library_id}/query", json=query).json()["results"]
    assert before["wal"]["first_index"] > 1, "the log was never compacted"
    node.kill()

    restarted = start_node(data=data, env=env)
    after = restarted.cluster()
    assert after["recovery"]["snapshot_index"] > 0
    assert after["recovery"]["replayed_entries"] > 0
    assert after["applied_index"] >= before["applied_index"]
    assert after["state_digest"] == before["state_digest"]
    with restarted.client() as new:
        query = {"query_embedding": [0.5] * DIM, "k": 10}
        assert (
            new.post(f"/libraries/{library_id}/query", json=query).json()["results"]
            == before_results
        )


def test_only_one_process_per_data_directory(start_node: StartNode, tmp_path: Path) -> None:
    data = tmp_path / "data"
    start_node(data=data)
    second = start_node(data=data, wait=False)
    assert second.process is not None
    assert second.process.wait(60) != 0
    assert "in use by another Shoal process" in second.log()


def test_sigterm_finishes_acknowledged_writes(start_node: StartNode, tmp_path: Path) -> None:
    data = tmp_path / "data"
    node = start_node("--fsync", "batch", data=data)
    library_id = new_library(node)
    stop = threading.Event()
    results: list = []
    writer = threading.Thread(
        target=lambda: results.extend(burst(node.url, library_id, 4, stop, seed=2))
    )
    writer.start()
    wait_for(lambda: node.cluster()["applied_index"] > 50, timeout=60)
    assert node.stop() == 0
    stop.set()
    writer.join(60)
    restarted = start_node(data=data)
    with restarted.client() as client:
        check_after_crash(client, library_id, results)


def test_ready_and_health(start_node: StartNode) -> None:
    node = start_node()
    assert httpx.get(node.url + "/health").json()["status"] == "ok"
    ready = httpx.get(node.url + "/ready")
    assert ready.status_code == 200 and ready.json()["ready"] is True
    status = node.cluster()
    assert status["role"] == "leader" and status["leader_id"] == "n1"
    assert status["term"] >= 1 and status["commit_index"] == status["applied_index"]
    metrics = httpx.get(node.url + "/metrics").text
    assert "shoal_commit_index" in metrics and "shoal_http_requests_total" in metrics


def test_a_restart_replays_a_short_log_next_to_the_state(
    start_node: StartNode, tmp_path: Path
) -> None:
    """Snapshots follow the log's growth against the state's size, not only
    entry counts: after 8 MiB of vectors in 40 entries (far below the 10,000
    entries and 256 MiB triggers), a kill -9 replays only a tail."""
    data = tmp_path / "data"
    node = start_node("--fsync", "off", data=data, env={"SHOAL_SNAPSHOT_LOG_RATIO": "0.25"})
    rng = np.random.default_rng(5)
    with node.client() as client:
        library = {"name": "ratio", "dimension": 256}
        library_id = client.post("/libraries", json=library).json()["id"]
        for n in range(40):
            vectors = rng.standard_normal((200, 256)).astype(np.float32)
            chunks = [{"text": f"d{n}c{c}", "embedding": v.tolist()} for c, v in enumerate(vectors)]
            created = client.post(f"/libraries/{library_id}/documents", json={"chunks": chunks})
            assert created.status_code == 201, created.text
        before = client.get("/cluster").json()["state_digest"]
    node.kill()
    restarted = start_node(data=data, env={"SHOAL_SNAPSHOT_LOG_RATIO": "0.25"})
    with restarted.client() as client:
        status = client.get("/cluster").json()
    recovery = status["recovery"]
    assert recovery["snapshot_index"] > 0, recovery
    # Each entry is ~200 KiB: a 4 MiB minimum allows ~20, a quarter of the
    # state after 40 entries ~10; replaying all 41 would mean no snapshot.
    assert recovery["replayed_entries"] <= 21, recovery
    assert status["state_digest"] == before


def test_a_quiet_node_snapshots_its_tail_so_a_restart_replays_nothing(
    start_node: StartNode, tmp_path: Path
) -> None:
    """A burst of ~2.4 MiB of vectors (below every other trigger: 10,000
    entries, 256 MiB, and the 4 MiB least of the ratio trigger), then quiet:
    the node snapshots the burst, and a kill -9 then replays no entry and
    loses none. Each document alone is past the quiet trigger's 256 KiB, so a
    pause inside the burst cannot leave a last entry too short to snapshot."""
    data = tmp_path / "data"
    env = {"SHOAL_SNAPSHOT_WHEN_QUIET": "0.5"}
    node = start_node("--fsync", "off", data=data, env=env)
    rng = np.random.default_rng(11)
    with node.client() as client:
        library = {"name": "quiet", "dimension": 256, "index_type": "hnsw"}
        library_id = client.post("/libraries", json=library).json()["id"]
        for n in range(6):
            vectors = rng.standard_normal((400, 256)).astype(np.float32)
            chunks = [{"text": f"d{n}c{c}", "embedding": v.tolist()} for c, v in enumerate(vectors)]
            created = client.post(f"/libraries/{library_id}/documents", json={"chunks": chunks})
            assert created.status_code == 201, created.text
    applied = node.cluster()["applied_index"]
    wait_for(lambda: (node.cluster()["snapshot"] or {}).get("index") == applied, timeout=20)
    digest = node.cluster()["state_digest"]
    node.kill()

    restarted = start_node(data=data, env=env)
    status = restarted.cluster()
    assert status["recovery"]["snapshot_index"] == applied, status["recovery"]
    assert status["recovery"]["replayed_entries"] == 0, status["recovery"]
    assert status["state_digest"] == digest


def test_a_node_under_steady_writes_takes_no_quiet_snapshot(
    start_node: StartNode, tmp_path: Path
) -> None:
    """Writes every 0.2 s for over 5 s keep a node with a 3 s quiet time from
    ever being quiet: no snapshot comes (the other triggers are far away)."""
    node = start_node("--fsync", "off", env={"SHOAL_SNAPSHOT_WHEN_QUIET": "3.0"})
    rng = np.random.default_rng(12)
    with node.client() as client:
        library_id = client.post("/libraries", json={"name": "busy", "dimension": 256}).json()["id"]
        for n in range(26):
            vectors = rng.standard_normal((100, 256)).astype(np.float32)
            chunks = [{"text": f"d{n}c{c}", "embedding": v.tolist()} for c, v in enumerate(vectors)]
            created = client.post(f"/libraries/{library_id}/documents", json={"chunks": chunks})
            assert created.status_code == 201, created.text
            time.sleep(0.2)
        assert node.cluster()["snapshot"] is None
