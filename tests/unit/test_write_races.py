"""Writes checked against one state and applied to a later one.

Without a lock from check to apply, another write may land in between. When
the service baked something it saw into the command, the command carries
that as a precondition and apply refuses it (Conflict, the same on every
replica) instead of undoing the write that came first.
"""

from __future__ import annotations

import random

import numpy as np

from node import commands as cmd
from node.store.library import IF_INDEX, IF_SERVER_EMBEDDED
from node.store.state import StateMachine
from tests.unit.test_state_machine import Log, batch, create_library


def test_a_re_embedding_computed_before_a_callers_vector_landed_is_refused() -> None:
    machine = StateMachine()
    log = Log(machine)
    create_library(log)
    rng = random.Random(1)
    chunks = batch(rng, 1)
    chunks = cmd.ChunkBatch(chunks.ids, chunks.texts, chunks.page_numbers, chunks.chunk_indexes,
                            chunks.created_at, [True], chunks.dim, chunks.vectors)  # fmt: skip
    log.apply(cmd.AddDocument("lib-1", "d1", cmd.DocumentFields(created_at=1), chunks, 1))
    chunk_id = chunks.ids[0]
    # B was checked while the chunk's vector was the server's: it re-embeds "t2".
    from_text = np.full(8, 0.25, dtype="<f4").tobytes()
    late = cmd.UpdateChunk(
        "lib-1", chunk_id, {"text": "t2", IF_SERVER_EMBEDDED: True}, from_text, 3
    )
    # A lands first: the caller's own vector.
    own = np.arange(1, 9, dtype="<f4")
    (first,) = log.apply(cmd.UpdateChunk("lib-1", chunk_id, {"server_embedded": False},
                                         own.tobytes(), 2))  # fmt: skip
    assert first.error is None  # type: ignore[attr-defined]
    (second,) = log.apply(late)
    assert second.error == "Conflict", second  # type: ignore[attr-defined]
    library = machine.libraries["lib-1"]
    chunk = library.chunks[chunk_id]
    assert np.array_equal(library.vector(chunk), own)  # A's vector survived
    assert chunk.text != "t2" and not chunk.server_embedded


def test_an_index_change_computed_before_another_landed_is_refused() -> None:
    machine = StateMachine()
    log = Log(machine)
    create_library(log)
    log.apply(cmd.AddDocument("lib-1", "d1", cmd.DocumentFields(created_at=1),
                              batch(random.Random(2), 5), 1))  # fmt: skip
    # B was checked against brute_force: it changes a parameter, type defaulted.
    seen = ["brute_force", {}]
    late_changes = {"index_type": "brute_force", "index_params": {}, IF_INDEX: seen,
                    "description": "b"}  # fmt: skip
    late = cmd.UpdateLibrary("lib-1", late_changes, 3)
    first_changes = {"index_type": "hnsw", "index_params": {"seed": 4}, IF_INDEX: seen}
    (first,) = log.apply(cmd.UpdateLibrary("lib-1", first_changes, 2))
    assert first.error is None  # type: ignore[attr-defined]
    (second,) = log.apply(late)
    assert second.error == "Conflict", second  # type: ignore[attr-defined]
    info = machine.libraries["lib-1"].info
    assert (info.index_type, info.index_params, info.description) == ("hnsw", {"seed": 4}, None)


def test_writes_without_preconditions_apply_as_before() -> None:
    machine = StateMachine()
    log = Log(machine)
    create_library(log)
    (changed,) = log.apply(cmd.UpdateLibrary("lib-1", {"description": "plain"}, 2))
    assert changed.error is None  # type: ignore[attr-defined]
    assert machine.libraries["lib-1"].info.description == "plain"
