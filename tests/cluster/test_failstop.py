"""Fail-stop on real processes, with faults the operating system makes.

A node whose disk fails (full, or fsync answering EIO) must stop taking
part: it exits with status 75 instead of leading on at an old term, the
others elect a leader, no acknowledged write is lost, and once the disk is
back the node restarts from what it had made durable and catches up.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import msgpack
import pytest

from tests.cluster.register_workload import (
    LeaderMonitor,
    RegisterWorkload,
    make_registers,
    verify,
)
from tests.cluster_harness import SECRET_HEADER, ClusterProcesses

pytestmark = pytest.mark.cluster
EXIT_FAILED = 75
TMPFS_BYTES = 24 << 20
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs needs root")


def _wait_exit(cluster: ClusterProcesses, node_id: str, timeout: float) -> int:
    process = cluster.nodes[node_id].process
    assert process is not None
    try:
        return process.wait(timeout)
    except subprocess.TimeoutExpired:
        raise AssertionError(
            f"{node_id} did not stop within {timeout}s:\n{cluster.nodes[node_id].log()}"
        ) from None


@pytest.fixture
def tmpfs_cluster(tmp_path: Path) -> Iterator[ClusterProcesses]:
    """Three nodes, each with its data directory on a small tmpfs of its own."""
    cluster = ClusterProcesses(tmp_path / "c", 3)
    mounted: list[Path] = []
    try:
        for node in cluster.nodes.values():
            node.data_dir.mkdir(parents=True)
            subprocess.run(
                ["mount", "-t", "tmpfs", "-o", f"size={TMPFS_BYTES}", "tmpfs",
                 str(node.data_dir)], check=True,
            )  # fmt: skip
            mounted.append(node.data_dir)
        cluster.start()
        yield cluster
    finally:
        cluster.stop()
        for path in mounted:
            subprocess.run(["umount", "-l", str(path)], check=False)


def _fill_disk(path: Path) -> Path:
    """Leave almost no room on the file system holding ``path``."""
    filler = path / "filler"
    free = shutil.disk_usage(path).free
    # Unbuffered: the node writes meanwhile and may take the last bytes
    # first; a write that finds the disk full ends the filling (it is full).
    with open(filler, "wb", buffering=0) as handle:
        block = b"\0" * (1 << 20)
        written = 0
        while written < free - (8 << 10):
            try:
                written += handle.write(block[: max(4096, min(len(block), free - written))])
            except OSError:
                break
    return filler


def _drill(cluster: ClusterProcesses, fault: str, victim: str = "leader") -> dict[str, object]:
    keys = make_registers(cluster, 3)
    monitor = LeaderMonitor(cluster).start()
    workload = RegisterWorkload(cluster, keys, clients=3, seed=5).start()
    failing = cluster.leader() if victim == "leader" else cluster.followers()[0]
    tracer: subprocess.Popen[bytes] | None = None
    filler: Path | None = None
    try:
        time.sleep(1.5)
        if fault == "full":
            filler = _fill_disk(cluster.nodes[failing].data_dir)
        else:
            tracer = subprocess.Popen(
                ["strace", "-f", "-qq", "-p", str(cluster.nodes[failing].pid),
                 "-e", "trace=fdatasync,fsync",
                 "-e", "inject=fdatasync:error=EIO", "-e", "inject=fsync:error=EIO"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )  # fmt: skip
        code = _wait_exit(cluster, failing, timeout=45)
        assert code == EXIT_FAILED, cluster.nodes[failing].log()
        assert "exiting with status 75" in cluster.nodes[failing].log()
        new_leader = cluster.leader(timeout=20)
        assert new_leader != failing
        time.sleep(1.0)  # writes go on without the failed node
    finally:
        ops = workload.stop()
        if tracer is not None:
            tracer.send_signal(signal.SIGINT)
            tracer.wait(10)
        if filler is not None:
            filler.unlink()
    cluster.nodes[failing].kill()  # reap it and close its log
    cluster.restart(failing, wait=True)
    result = verify(cluster, ops, keys, monitor)
    monitor.stop()
    writes = sum(1 for op in ops if op.kind == "write" and op.outcome == "ok")
    assert writes > 10
    return result


@needs_root
def test_full_disk_on_the_leader_stops_it(tmpfs_cluster: ClusterProcesses) -> None:
    _drill(tmpfs_cluster, "full")


@needs_root
def test_full_disk_on_a_follower_stops_it(tmpfs_cluster: ClusterProcesses) -> None:
    _drill(tmpfs_cluster, "full", victim="follower")


@pytest.mark.skipif(shutil.which("strace") is None, reason="strace is not installed")
def test_fsync_eio_on_the_leader_stops_it(make_cluster: object) -> None:
    cluster = make_cluster(3)  # type: ignore[operator]
    _drill(cluster, "eio")


def test_malformed_message_from_a_peer_is_refused_and_changes_nothing(
    make_cluster: object,
) -> None:
    cluster: ClusterProcesses = make_cluster(3)  # type: ignore[operator]
    leader = cluster.leader()
    follower = cluster.followers()[0]
    body = {"kind": "append", "term": "x", "sender": leader, "prev_index": 0, "prev_term": 0,
            "entries": [], "commit": 0, "rpc": 1}  # fmt: skip
    for target in (leader, follower):
        response = httpx.post(
            cluster.nodes[target].url + "/_cluster/raft",
            content=msgpack.packb(body),
            headers={**SECRET_HEADER, "content-type": "application/msgpack"},
            timeout=10,
        )
        assert response.status_code == 400, response.text
        assert "term" in response.json()["detail"]
    with cluster.client(leader) as api:
        created = api.post("/libraries", json={"name": "still-working"})
        assert created.status_code == 201, created.text
    assert cluster.leader() == leader
    cluster.converged()


def test_sigterm_stops_a_leader_that_lost_its_followers(make_cluster: object) -> None:
    """A node cut off from the rest, with reads and writes waiting on it,
    still stops promptly on SIGTERM, answering what waits, and exits 0."""
    cluster: ClusterProcesses = make_cluster(3)  # type: ignore[operator]
    leader = cluster.leader()
    with cluster.client(leader) as api:
        library_id = api.post("/libraries", json={"name": "stranded"}).json()["id"]
    followers = cluster.followers()
    for follower in followers:
        cluster.pause(follower)
    answers: list[int | str] = []

    def request(kind: str) -> None:
        url = cluster.nodes[leader].url
        try:
            if kind == "read":
                params = {"consistency": "linearizable"}
                response = httpx.get(f"{url}/libraries/{library_id}", params=params, timeout=60)
            else:
                body = {"description": "late"}
                response = httpx.patch(f"{url}/libraries/{library_id}", json=body, timeout=60)
            answers.append(response.status_code)
        except httpx.HTTPError as exc:
            answers.append(type(exc).__name__)

    waiting = [threading.Thread(target=request, args=(k,)) for k in ("read", "write") * 4]
    for thread in waiting:
        thread.start()
    try:
        time.sleep(0.3)
        stopped_at = time.monotonic()
        code = cluster.nodes[leader].stop(timeout=30)
        took = time.monotonic() - stopped_at
        for thread in waiting:
            thread.join(30)
    finally:
        for follower in followers:
            cluster.resume(follower)
    assert code == 0, cluster.nodes[leader].log()
    assert took < 10, f"SIGTERM took {took:.1f}s to stop the node"
    assert len(answers) == len(waiting), answers
    assert 200 not in answers, answers  # nothing was confirmed by a majority
