"""A committed entry can never stop a replica (issue 11, poison entries).

What could fail while applying is refused before the entry is logged; what
still fails while applying becomes the same error outcome on every replica,
and the state machine moves on with the library as it was.
"""

from __future__ import annotations

import dataclasses
import logging
import random

import msgpack
import numpy as np
import pytest
from pydantic import ValidationError

from indexes import hnsw
from node import commands as cmd
from node import models
from node.errors import APPLY_ERRORS
from node.store.digest import state_digest
from node.store.library import Library
from node.store.state import StateMachine
from node.timeutil import datetime_to_us, to_iso
from tests.unit.test_state_machine import DIM, Log, batch
from wal import EntryKind, LogEntry

TOO_EARLY = "0001-01-01T00:00:00+14:00"
TOO_LATE = "9999-12-31T23:59:59-14:00"


@pytest.mark.parametrize("moment", [TOO_EARLY, TOO_LATE, "9999-12-31T23:59:59.999999-00:01"])
def test_instants_views_cannot_render_are_refused(moment: str) -> None:
    metadata = {"created_at": moment}
    for model in (models.DocumentMetadata, models.DocumentMetadataUpdate, models.ChunkMetadata):
        with pytest.raises(ValidationError, match="between 0001-01-01T00:00:00Z and 9999"):
            model.model_validate(metadata)
    with pytest.raises(ValidationError, match="created_at"):
        models.ChunkUpdate.model_validate({"metadata": metadata})


@pytest.mark.parametrize(
    ("moment", "shown"),
    [
        ("0001-01-01T00:00:00Z", "0001-01-01T00:00:00.000000Z"),
        ("0001-01-01T23:59:59+14:00", "0001-01-01T09:59:59.000000Z"),
        ("9999-12-31T23:59:59.999999Z", "9999-12-31T23:59:59.999999Z"),
        ("9999-12-31T23:59:59.999999", "9999-12-31T23:59:59.999999Z"),
        ("1969-12-31T23:59:59.999999Z", "1969-12-31T23:59:59.999999Z"),
    ],
)
def test_instants_at_the_edges_render_exactly(moment: str, shown: str) -> None:
    parsed = models.DocumentMetadata.model_validate({"created_at": moment}).created_at
    assert parsed is not None
    assert to_iso(datetime_to_us(parsed)) == shown


def entry(index: int, payload: bytes) -> LogEntry:
    return LogEntry(index, 1, EntryKind.COMMAND, payload)


def three_replicas() -> tuple[list[StateMachine], Log]:
    machines = [StateMachine() for _ in range(3)]
    log = Log(*machines)
    log.apply(cmd.CreateLibrary("lib-1", "one", None, None, "cosine", "hnsw", {"seed": 3}, "m", 1))
    log.apply(cmd.AddDocument("lib-1", "d1", cmd.DocumentFields(), batch(random.Random(1), 4), 2))
    return machines, log


def test_a_handler_bug_is_one_error_outcome_on_every_replica(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    machines, log = three_replicas()

    def broken(self: Library, document_id: str) -> None:
        raise RuntimeError(f"no delete for {document_id} today")

    monkeypatch.setattr(Library, "delete_document", broken)
    with caplog.at_level(logging.ERROR, logger="shoal.state"):
        outcomes = log.apply(cmd.DeleteDocument("lib-1", "d1"))
    first = outcomes[0]
    assert all(outcome == first for outcome in outcomes)
    assert getattr(first, "error", None) == "ApplyFailed"
    detail = str(getattr(first, "detail", ""))
    assert "RuntimeError: no delete for d1 today" in detail
    assert "logged but could not be applied" in detail and "changed nothing" in detail
    assert APPLY_ERRORS["ApplyFailed"].status == 500
    assert all(machine.applied_index == log.index for machine in machines)
    assert any(record.levelno == logging.ERROR for record in caplog.records)
    monkeypatch.undo()
    log.apply(cmd.AddDocument("lib-1", "d2", cmd.DocumentFields(), batch(random.Random(2), 2), 3))
    assert all(len(machine.libraries["lib-1"].documents) == 2 for machine in machines)
    assert len({state_digest(machine) for machine in machines}) == 1


def test_a_keyed_failure_is_remembered_alike(monkeypatch: pytest.MonkeyPatch) -> None:
    machines, log = three_replicas()
    monkeypatch.setattr(Library, "delete_document", lambda self, doc: 1 / 0)
    payload = cmd.encode(cmd.DeleteDocument("lib-1", "d1"), "key-1")
    outcomes = [machine.apply(entry(log.index + 1, payload)) for machine in machines]
    assert getattr(outcomes[0], "error", None) == "ApplyFailed"
    assert "ZeroDivisionError" in str(getattr(outcomes[0], "detail", ""))
    assert all(machine.remembered("key-1") == (log.index + 1, outcomes[0]) for machine in machines)
    assert len({state_digest(machine) for machine in machines}) == 1


@pytest.mark.parametrize(
    "payload",
    [
        b"\xc1 not msgpack",
        msgpack.packb({"op": "no_such_op"}),
        msgpack.packb({"op": "delete_document", "library_id": "lib-1"}),
        msgpack.packb([1, 2, 3]),
    ],
)
def test_an_unreadable_entry_is_an_error_outcome(payload: bytes) -> None:
    machines, log = three_replicas()
    before = state_digest(machines[0])
    outcomes = [machine.apply(entry(log.index + 1, payload)) for machine in machines]
    assert len(set(outcomes)) == 1
    assert getattr(outcomes[0], "error", None) == "ApplyFailed"
    assert "not a command" in str(getattr(outcomes[0], "detail", ""))
    assert all(machine.applied_index == log.index + 1 for machine in machines)
    assert state_digest(machines[0]) == before


def test_entries_out_of_order_still_stop_the_node() -> None:
    machines, log = three_replicas()
    with pytest.raises(RuntimeError, match="applied after"):
        machines[0].apply(entry(log.index + 2, cmd.encode(cmd.DeleteDocument("lib-1", "d1"))))


def search_rows(machine: StateMachine) -> list[str]:
    library = machine.libraries["lib-1"]
    found, _ = library.search(np.ones(DIM, dtype=np.float32), 10, None)
    return sorted(found)


MARK = 0.5  # vectors of this value make the patched insert kernel fail


def fail_on_marked_vectors(monkeypatch: pytest.MonkeyPatch) -> None:
    real = hnsw.kernels.insert_batch

    def insert_batch(buffer: np.ndarray, aux: np.ndarray, mode: int, ids: np.ndarray,
                     *rest: object) -> object:  # fmt: skip
        if np.all(buffer[ids] == MARK, axis=1).any():
            raise RuntimeError("kernel failed")
        return real(buffer, aux, mode, ids, *rest)

    monkeypatch.setattr(hnsw.kernels, "insert_batch", insert_batch)


def marked(count: int) -> cmd.ChunkBatch:
    vectors = np.full((count, DIM), MARK, dtype="<f4").tobytes()
    return dataclasses.replace(batch(random.Random(count), count), vectors=vectors)


def test_a_failed_insert_leaves_the_library_as_it_was(monkeypatch: pytest.MonkeyPatch) -> None:
    machines, log = three_replicas()
    library = machines[0].libraries["lib-1"]
    chunks_before = sorted(library.chunks)
    rows_before = library.rows.state()
    assert library.store is not None
    live_before = library.store.live().copy()
    fail_on_marked_vectors(monkeypatch)
    outcomes = log.apply(cmd.AddDocument("lib-1", "d2", cmd.DocumentFields(), marked(3), 3))
    first_chunk = chunks_before[0]
    vector = np.full(DIM, MARK, dtype="<f4").tobytes()
    outcomes += log.apply(cmd.UpdateChunk("lib-1", first_chunk, {"text": "x"}, vector, 4))
    assert all(getattr(outcome, "error", None) == "ApplyFailed" for outcome in outcomes)
    assert sorted(library.documents) == ["d1"]
    assert sorted(library.chunks) == chunks_before
    assert library.chunks[first_chunk].text != "x"
    assert library.rows.state() == rows_before
    assert library.store is not None
    assert np.array_equal(library.store.live()[: len(live_before)], live_before)
    assert not library.store.live()[len(live_before) :].any()
    assert search_rows(machines[0]) == chunks_before
    log.apply(cmd.AddDocument("lib-1", "d3", cmd.DocumentFields(), batch(random.Random(9), 2), 5))
    assert len(search_rows(machines[0])) == 6
    assert len({state_digest(machine) for machine in machines}) == 1


def test_an_index_that_keeps_failing_leaves_the_records_alone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    machines, log = three_replicas()
    library = machines[0].libraries["lib-1"]
    chunks_before, rows_before = sorted(library.chunks), library.rows.state()
    monkeypatch.setattr(hnsw.kernels, "insert_batch", lambda *args: 1 / 0)
    outcomes = log.apply(cmd.AddDocument("lib-1", "d2", cmd.DocumentFields(), marked(3), 3))
    vector = np.full(DIM, MARK, dtype="<f4").tobytes()
    outcomes += log.apply(cmd.UpdateChunk("lib-1", chunks_before[0], {"text": "x"}, vector, 4))
    assert all(getattr(outcome, "error", None) == "ApplyFailed" for outcome in outcomes)
    assert sorted(library.documents) == ["d1"] and sorted(library.chunks) == chunks_before
    assert library.rows.state() == rows_before
    assert all(machine.applied_index == log.index for machine in machines)
    assert len({state_digest(machine) for machine in machines}) == 1


def test_a_failed_first_insert_leaves_no_dimension(monkeypatch: pytest.MonkeyPatch) -> None:
    machine = StateMachine()
    log = Log(machine)
    log.apply(cmd.CreateLibrary("lib-1", "one", None, None, "cosine", "hnsw", {"seed": 3}, "m", 1))
    monkeypatch.setattr(hnsw.kernels, "insert_batch", lambda *args: 1 / 0)
    (outcome,) = log.apply(
        cmd.AddDocument("lib-1", "d1", cmd.DocumentFields(), batch(random.Random(1), 2), 2)
    )
    assert getattr(outcome, "error", None) == "ApplyFailed"
    library = machine.libraries["lib-1"]
    assert library.info.dimension is None and library.index is None and not library.documents


def test_index_params_are_checked_at_apply_even_without_vectors() -> None:
    machine = StateMachine()
    log = Log(machine)
    params = {"seed": 3, "ef_construction": 200.5}
    (outcome,) = log.apply(
        cmd.CreateLibrary("lib-1", "one", None, None, "cosine", "hnsw", params, "m", 1)
    )
    assert getattr(outcome, "error", None) == "InvalidRequest"
    assert "ef_construction must be an integer" in str(getattr(outcome, "detail", ""))
    log.apply(cmd.CreateLibrary("lib-1", "one", None, None, "cosine", "hnsw", {"seed": 3}, "m", 1))
    (outcome,) = log.apply(cmd.UpdateLibrary("lib-1", {"index_params": params}, 2))
    assert getattr(outcome, "error", None) == "InvalidRequest"
    assert machine.libraries["lib-1"].info.index_params == {"seed": 3}
