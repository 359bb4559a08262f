from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest

from node import commands as cmd
from node.store.digest import state_digest
from node.store.snapshot_codec import FORMAT, capture, restore
from node.store.state import StateMachine
from wal import EntryKind, LogEntry, SnapshotStore

DIM = 8


def batch(rng: random.Random, count: int, dim: int = DIM) -> cmd.ChunkBatch:
    vectors = np.asarray(
        [[rng.uniform(-1, 1) for _ in range(dim)] for _ in range(count)], dtype="<f4"
    )
    return cmd.ChunkBatch(
        ids=[f"c{rng.getrandbits(48):012x}" for _ in range(count)],
        texts=[f"text {rng.random()}" for _ in range(count)],
        page_numbers=[rng.choice([None, 1, 2, 3]) for _ in range(count)],
        chunk_indexes=list(range(count)),
        created_at=[rng.randrange(10**15) for _ in range(count)],
        server_embedded=[False] * count,
        dim=dim,
        vectors=vectors.tobytes(),
    )


class Log:
    """Feeds commands to several state machines as numbered entries."""

    def __init__(self, *machines: StateMachine) -> None:
        self.machines = list(machines)
        self.index = 0

    def apply(self, command: cmd.Command) -> list[object]:
        self.index += 1
        entry = LogEntry(self.index, 1, EntryKind.COMMAND, cmd.encode(command))
        return [machine.apply(entry) for machine in self.machines]


def random_workload(rng: random.Random, log: Log, steps: int) -> None:
    library = "lib-1"
    documents: dict[str, list[str]] = {}
    for step in range(steps):
        roll = rng.random()
        if roll < 0.45 or not documents:
            doc = f"d{step}"
            chunks = batch(rng, rng.randint(0, 6))
            fields = cmd.DocumentFields(
                title=rng.choice(["a", "b", None]), created_at=step, tags=["x"] * (step % 2)
            )
            log.apply(cmd.AddDocument(library, doc, fields, chunks, step))
            documents[doc] = list(chunks.ids)
        elif roll < 0.6:
            doc = rng.choice(sorted(documents))
            log.apply(cmd.DeleteDocument(library, doc))
            del documents[doc]
        elif roll < 0.75:
            doc = rng.choice(sorted(documents))
            chunks = batch(rng, rng.randint(1, 4))
            log.apply(cmd.AddChunks(library, doc, chunks, step))
            documents[doc] += chunks.ids
        elif roll < 0.85:
            doc = rng.choice(sorted(documents))
            if documents[doc]:
                chunk = documents[doc].pop(rng.randrange(len(documents[doc])))
                log.apply(cmd.DeleteChunk(library, chunk))
        else:
            doc = rng.choice(sorted(documents))
            if documents[doc]:
                chunk = rng.choice(documents[doc])
                vector = np.ones(DIM, dtype="<f4").tobytes()
                log.apply(cmd.UpdateChunk(library, chunk, {"text": "new"}, vector, step))


def create_library(log: Log) -> None:
    log.apply(cmd.CreateLibrary("lib-1", "one", None, None, "cosine", "brute_force", {}, "m", 1))


def test_same_log_same_digest() -> None:
    first, second = StateMachine(), StateMachine()
    log = Log(first, second)
    create_library(log)
    random_workload(random.Random(3), log, 200)
    assert first.applied_index == second.applied_index == log.index
    assert state_digest(first) == state_digest(second)
    assert len(first.libraries["lib-1"].chunks) > 0


def test_snapshot_restore_then_replay_matches(tmp_path: Path) -> None:
    original = StateMachine()
    log = Log(original)
    create_library(log)
    random_workload(random.Random(11), log, 150)
    store = SnapshotStore(tmp_path)
    image = capture(original)
    writer = store.begin(image.index, image.term, {"format": FORMAT})
    image.write(writer)
    writer.commit()
    info, _, records = store.newest_valid() or (None, None, None)
    assert info is not None and records is not None
    restored = StateMachine()
    restore(restored, records, info.index, info.term)
    assert state_digest(restored) == state_digest(original)
    # Rows freed before the snapshot are reused identically afterwards.
    log.machines.append(restored)
    random_workload(random.Random(12), log, 100)
    assert state_digest(restored) == state_digest(original)


def test_rejected_commands_leave_no_trace() -> None:
    machine = StateMachine()
    log = Log(machine)
    create_library(log)
    rng = random.Random(5)
    log.apply(cmd.AddDocument("lib-1", "d1", cmd.DocumentFields(), batch(rng, 3), 1))
    before = state_digest(machine)
    (outcome,) = log.apply(
        cmd.AddDocument("lib-1", "d2", cmd.DocumentFields(), batch(rng, 2, dim=5), 2)
    )
    assert getattr(outcome, "error", None) == "DimensionMismatch"
    (outcome,) = log.apply(cmd.DeleteDocument("lib-1", "missing"))
    assert getattr(outcome, "error", None) == "NotFound"
    (outcome,) = log.apply(cmd.AddDocument("nope", "d3", cmd.DocumentFields(), batch(rng, 1), 3))
    assert getattr(outcome, "error", None) == "NotFound"
    (outcome,) = log.apply(
        cmd.CreateLibrary("lib-2", "one", None, None, "cosine", "brute_force", {}, "m", 1)
    )
    assert getattr(outcome, "error", None) == "Conflict"
    assert state_digest(machine) == before
    assert machine.applied_index == log.index


def test_dimension_locks_on_first_vector() -> None:
    machine = StateMachine()
    log = Log(machine)
    create_library(log)
    assert machine.libraries["lib-1"].info.dimension is None
    log.apply(cmd.AddDocument("lib-1", "d1", cmd.DocumentFields(), batch(random.Random(1), 2), 1))
    assert machine.libraries["lib-1"].info.dimension == DIM


def test_delete_library_frees_its_name() -> None:
    machine = StateMachine()
    log = Log(machine)
    create_library(log)
    log.apply(cmd.DeleteLibrary("lib-1"))
    assert machine.library_id_by_name("one") is None
    create_library(log)
    assert "lib-1" in machine.libraries


def test_commands_round_trip_through_msgpack() -> None:
    command = cmd.AddDocument(
        "l", "d", cmd.DocumentFields(title="t", tags=["a"]), batch(random.Random(2), 2), 9
    )
    assert cmd.decode(cmd.encode(command)) == (command, None)
    assert cmd.decode(cmd.encode(command, "key-1")) == (command, "key-1")


def test_a_keyed_command_applies_once(tmp_path: Path) -> None:
    machine = StateMachine()
    log = Log(machine)
    create_library(log)
    document = cmd.AddDocument("lib-1", "d1", cmd.DocumentFields(), batch(random.Random(3), 2), 1)
    index = log.index + 1
    entry = LogEntry(index, 1, EntryKind.COMMAND, cmd.encode(document, "retry-me"))
    first = machine.apply(entry)
    again = machine.apply(
        LogEntry(index + 1, 1, EntryKind.COMMAND, cmd.encode(document, "retry-me"))
    )
    assert first == again and getattr(first, "error", None) is None
    assert len(machine.libraries["lib-1"].documents) == 1
    # the remembered keys survive a snapshot and count in the digest
    store = SnapshotStore(tmp_path)
    image = capture(machine)
    writer = store.begin(image.index, image.term, {"format": FORMAT})
    image.write(writer)
    writer.commit()
    info, _, records = store.newest_valid() or (None, None, None)
    assert info is not None and records is not None
    restored = StateMachine()
    restore(restored, records, info.index, info.term)
    assert "retry-me" in restored.requests
    assert state_digest(restored) == state_digest(machine)


@pytest.mark.parametrize(
    ("index_type", "metric"),
    [("hnsw", "cosine"), ("hnsw", "l2"), ("hnsw", "dot"), ("kd_tree", "l2"), ("lsh", "cosine")],
)
def test_a_restored_index_answers_as_the_applied_one(
    tmp_path: Path, index_type: str, metric: str
) -> None:
    """The digest sees index.state(), not what a search derives from the
    store (HNSW's norms, say): compare answers too, with tombstones, reused
    rows and overwritten vectors in the snapshot."""
    original = StateMachine()
    log = Log(original)
    # HNSW keeps its tombstones (no repair) so the snapshot carries some
    params = {"repair_threshold": 0.9} if index_type == "hnsw" else {}
    log.apply(cmd.CreateLibrary("lib-1", "one", None, None, metric, index_type, params, "m", 1))
    random_workload(random.Random(21), log, 160)
    # The lowest freed row is reused first, and HNSW repairs before reusing a
    # tombstoned row: end on deletions, so the snapshot holds tombstones.
    documents = original.libraries["lib-1"].documents
    for doc in sorted(documents, key=lambda d: -len(documents[d].chunk_ids))[:2]:
        log.apply(cmd.DeleteDocument("lib-1", doc))
    store = SnapshotStore(tmp_path)
    image = capture(original)
    writer = store.begin(image.index, image.term, {"format": FORMAT})
    image.write(writer)
    writer.commit()
    info, _, records = store.newest_valid() or (None, None, None)
    assert info is not None and records is not None
    restored = StateMachine()
    restore(restored, records, info.index, info.term)
    queries = np.random.default_rng(5).uniform(-1, 1, (30, DIM)).astype(np.float32)

    def answers(machine: StateMachine) -> list[tuple[list[int], list[float]]]:
        index = machine.libraries["lib-1"].index
        assert index is not None
        found = [index.search(q, 5) for q in queries]
        ids, scores = index.search_batch(queries, 5)
        return [(i.tolist(), s.tolist()) for i, s in found] + [(ids.tolist(), scores.tolist())]

    for step in range(2):
        assert state_digest(restored) == state_digest(original)
        assert answers(restored) == answers(original)
        if index_type == "hnsw":
            a, b = original.libraries["lib-1"].index, restored.libraries["lib-1"].index
            in_graph = np.flatnonzero(a.levels >= 0)  # type: ignore[union-attr]
            np.testing.assert_array_equal(a.aux[in_graph], b.aux[in_graph])  # type: ignore[union-attr]
            assert a.tombstones > 0 or step > 0  # type: ignore[union-attr]
        if step == 0:  # both keep evolving identically
            log.machines.append(restored)
            random_workload(random.Random(22), log, 80)
