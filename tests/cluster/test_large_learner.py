"""A learner added to a cluster holding 1 GiB of vectors catches up while
writes continue (issue #13). A long drill: marked ``long``.

The cluster is made the way an operator seeds one: a backup file restored
with ``shoal restore`` (the state is built in this process, 699,051 vectors
of 384 float32, rather than sent over HTTP for eight minutes). A node serves
it, a writer keeps adding documents, and a fresh node joins as a learner: it
must receive the state by snapshot, then the log since, and end with the
leader's digest while no acknowledged write is lost.
"""

from __future__ import annotations

import hashlib
import time
import uuid
from pathlib import Path

import httpx
import numpy as np
import pytest

from node import commands as cmd
from node.backup import BackupHeader, restore_backup, write_backup
from node.store.digest import state_digest
from node.store.snapshot_codec import capture
from node.store.state import StateMachine
from tests.cluster.sdk_writer import SdkWriter
from tests.cluster_harness import SECRET
from tests.harness import NodeProcess
from wal import EntryKind, LogEntry, SnapshotStore

pytestmark = [pytest.mark.cluster, pytest.mark.long, pytest.mark.timeout(900)]
DIMENSION = 384
GIB = 1 << 30
PER_DOCUMENT = 5_000
CATCH_UP_BOUND = 300.0  # seconds; about 30 s on the shared 2-core machine


def _big_state(vectors: int) -> StateMachine:
    state = StateMachine()
    index = 1
    state.apply(LogEntry(index, 1, EntryKind.COMMAND, cmd.encode(cmd.CreateLibrary(
        "big", "big", None, DIMENSION, "cosine", "brute_force", {}, "m", 1))))  # fmt: skip
    rng = np.random.default_rng(5)
    for start in range(0, vectors, PER_DOCUMENT):
        count = min(PER_DOCUMENT, vectors - start)
        rows = rng.standard_normal((count, DIMENSION), dtype=np.float32)
        rows /= np.linalg.norm(rows, axis=1, keepdims=True)
        batch = cmd.ChunkBatch(
            ids=[f"c{start + n:09d}" for n in range(count)],
            texts=[""] * count,
            page_numbers=[None] * count,
            chunk_indexes=list(range(count)),
            created_at=[start] * count,
            server_embedded=[False] * count,
            dim=DIMENSION,
            vectors=rows.astype("<f4").tobytes(),
        )
        index += 1
        add = cmd.AddDocument("big", f"d{start:09d}", cmd.DocumentFields(), batch, start)
        state.apply(LogEntry(index, 1, EntryKind.COMMAND, cmd.encode(add)), want_result=False)
    return state


def _seeded_data_dir(tmp_path: Path, vectors: int) -> Path:
    """A data directory restored from a backup of ``_big_state``."""
    state = _big_state(vectors)
    image = capture(state)
    writer = SnapshotStore(tmp_path / "made").begin(image.index, image.term, image.meta())
    image.write(writer)
    info = writer.commit()
    digest = state_digest(state)
    del state, image
    hasher = hashlib.sha256()
    with open(info.path, "rb") as file:
        while block := file.read(1 << 24):
            hasher.update(block)
    size = info.path.stat().st_size
    header = BackupHeader(info.index, info.term, digest, hasher.hexdigest(), size,
                          uuid.uuid4().hex[:16], "made", "2026-12-04T00:00:00Z")  # fmt: skip

    def body() -> object:
        with open(info.path, "rb") as file:
            while block := file.read(1 << 24):
                yield block

    backup = tmp_path / "big.backup"
    write_backup(backup, header, body())  # type: ignore[arg-type]
    info.path.unlink()
    data = tmp_path / "n1"
    restore_backup(backup, data, "n1")
    backup.unlink()
    return data


def _view(node: NodeProcess, digest: bool = False) -> dict[str, object] | None:
    try:
        answer = httpx.get(node.url + "/cluster" + ("?digest=now" if digest else ""),
                           timeout=120 if digest else 5)  # fmt: skip
    except httpx.HTTPError:
        return None
    return answer.json() if answer.status_code == 200 else None


def test_a_learner_catches_up_to_a_gib_of_vectors_while_writes_continue(
    tmp_path: Path,
) -> None:
    vectors = GIB // (DIMENSION * 4) + 1
    data = _seeded_data_dir(tmp_path, vectors)
    env = {"SHOAL_CLUSTER_SECRET": SECRET}
    leader = NodeProcess(data, node_id="n1", env=env).start(timeout=180)
    learner: NodeProcess | None = None
    writer: SdkWriter | None = None
    try:
        with leader.client(timeout=60) as api:
            assert api.get("/libraries/big").json()["chunk_count"] == vectors
        writer = SdkWriter(leader.url, "during-catch-up").start()
        time.sleep(1.0)
        seen = _view(leader)
        assert seen is not None
        target = int(seen["commit_index"])  # type: ignore[call-overload]
        acked_before = len(writer.acknowledged)
        learner = NodeProcess(tmp_path / "r1", "--join", leader.url, node_id="r1", env=env)
        started = time.monotonic()
        learner.start(wait=False)
        while True:
            view = _view(learner)
            if view is not None and int(view["applied_index"]) >= target:  # type: ignore[call-overload]
                break
            assert learner.process is not None and learner.process.poll() is None, learner.log()
            assert time.monotonic() - started < CATCH_UP_BOUND, learner.log()
            time.sleep(0.25)
        took = time.monotonic() - started
        assert view["role"] == "learner"
        assert len(writer.acknowledged) > acked_before, "writes stopped while the learner caught up"
        print(f"learner caught up to entry {target} in {took:.1f} s")  # noqa: T201
        writer.stop_and_check()
        # Once writes stop, the learner ends where the leader is, to the byte.
        deadline = time.monotonic() + 120
        while True:
            ours, theirs = _view(leader, digest=True), _view(learner, digest=True)
            if ours and theirs and ours["digest_index"] == theirs["digest_index"]:
                assert ours["state_digest"] == theirs["state_digest"]
                break
            assert time.monotonic() < deadline, (ours, theirs)
            time.sleep(0.5)
    finally:
        if writer is not None:
            writer.stop()
        if learner is not None:
            learner.stop()
        leader.stop()
