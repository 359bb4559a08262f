"""Backups on real processes: ``shoal backup`` from a follower while writes
run, ``shoal restore`` into a new data directory, and a node started on it
holds the same state (issue #13)."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from node.backup import read_header
from tests.cluster.sdk_writer import SdkWriter
from tests.cluster_harness import SECRET, SECRET_HEADER, ClusterProcesses
from tests.harness import REPO, NodeProcess

pytestmark = pytest.mark.cluster
Make = Callable[..., ClusterProcesses]


def _shoal(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "node.cli", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=120)  # fmt: skip


def _documents(url: str, library: str) -> set[str]:
    from shoal_client import Client

    with Client(url) as client:
        return {document.id for document in client.list_documents(library)}


def _restored(tmp_path: Path, backup: Path, name: str) -> NodeProcess:
    data = tmp_path / name
    done = _shoal("restore", str(backup), "--data", str(data), "--node-id", "r1")
    assert done.returncode == 0, done.stderr
    return NodeProcess(data, node_id="r1").start()


def test_a_backup_from_a_follower_under_writes_restores_the_same_state(
    make_cluster: Make, tmp_path: Path
) -> None:
    cluster = make_cluster(3)
    urls = ",".join(node.url for node in cluster.nodes.values())
    writer = SdkWriter(urls, "backed-up").start()
    follower = cluster.followers()[0]
    try:
        time.sleep(1.5)
        before = set(writer.acknowledged)
        live = tmp_path / "live.backup"
        done = _shoal("backup", str(live), "--url", cluster.nodes[follower].url,
                      "--cluster-secret", SECRET)  # fmt: skip
        assert done.returncode == 0, done.stderr
        time.sleep(0.5)
    finally:
        writer.stop()
    assert not writer.failures, writer.failures[:3]
    header, _ = read_header(live)
    assert header.node_id == follower and header.index > 0
    restored = _restored(tmp_path, live, "from-live")
    try:
        view = restored.cluster()
        assert view["role"] == "leader" and [m["id"] for m in view["members"]] == ["r1"]
        source_id = cluster.status(follower)["cluster_id"]  # type: ignore[index]
        assert view["cluster_id"] != source_id
        assert view["state_digest"] == header.digest
        present = _documents(restored.url, writer.library)
        assert before <= present, f"{len(before - present)} documents written before are missing"
    finally:
        restored.stop()

    # Quiet now: the source's own digest, the backup's and the restored node's agree.
    writer.stop_and_check()
    digest = cluster.converged()
    quiet = tmp_path / "quiet.backup"
    other = next(n for n in cluster.nodes if n != follower)
    done = _shoal("backup", str(quiet), "--url", cluster.nodes[other].url,
                  "--cluster-secret", SECRET)  # fmt: skip
    assert done.returncode == 0, done.stderr
    header, _ = read_header(quiet)
    assert header.digest == digest
    again = _restored(tmp_path, quiet, "from-quiet")
    try:
        assert again.cluster()["state_digest"] == digest
        assert _documents(again.url, writer.library) == writer.acknowledged
        with again.client() as http:  # a cluster of its own: it takes writes
            created = http.post("/libraries", json={"name": "after", "dimension": 3})
            assert created.status_code == 201
    finally:
        again.stop()


def test_a_damaged_backup_an_occupied_directory_and_no_secret_are_refused(
    make_cluster: Make, tmp_path: Path
) -> None:
    cluster = make_cluster(3)
    leader = cluster.leader()
    with cluster.client(leader) as http:
        assert http.post("/libraries", json={"name": "one", "dimension": 3}).status_code == 201
    url = cluster.nodes[leader].url
    refused = httpx.post(url + "/admin/backup", timeout=30)
    assert refused.status_code == 403
    denied = _shoal("backup", str(tmp_path / "none.backup"), "--url", url)
    assert denied.returncode == 1 and "403" in denied.stderr
    assert not (tmp_path / "none.backup").exists()
    good = tmp_path / "good.backup"
    done = _shoal("backup", str(good), "--url", url, "--cluster-secret", SECRET)
    assert done.returncode == 0, done.stderr
    assert httpx.post(url + "/admin/backup", headers=SECRET_HEADER, timeout=30).status_code == 200

    data = bytearray(good.read_bytes())
    data[-100] ^= 0x01
    damaged = tmp_path / "damaged.backup"
    damaged.write_bytes(bytes(data))
    broken = _shoal("restore", str(damaged), "--data", str(tmp_path / "d1"))
    assert broken.returncode == 1 and "damaged" in broken.stderr
    assert not (tmp_path / "d1").exists()
    occupied = tmp_path / "occupied"
    occupied.mkdir()
    (occupied / "keep.txt").write_text("mine")
    taken = _shoal("restore", str(good), "--data", str(occupied))
    assert taken.returncode == 1 and "not an empty directory" in taken.stderr
    assert (occupied / "keep.txt").read_text() == "mine"
    not_a_backup = _shoal("restore", str(occupied / "keep.txt"), "--data", str(tmp_path / "d2"))
    assert not_a_backup.returncode == 1 and "not a Shoal backup" in not_a_backup.stderr
