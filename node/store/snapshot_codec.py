"""State machine <-> snapshot records.

:func:`capture` copies the state while nothing applies (it runs on the
applier thread, between entries) and is cheap; :meth:`Image.write` does the
I/O later on another thread. :func:`restore` rebuilds an identical state,
vector rows and free rows included, so applying the log after it gives what
the original node had.

Records: ``{"library": ...}`` then ``{"documents": [...]}`` batches, then
``{"chunks": document_id, "items": [...], "vectors": bytes}`` runs in each
document's chunk order. Libraries and documents come in listing order and
carry the log index that created them; remembered answers of keyed writes
are kept msgpack-encoded (format 2; format 1 had neither and is not read).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from node.commands import ChunkBatch, DocumentFields
from node.store.library import Library
from node.store.records import ChunkRecord, DocumentRecord, LibraryInfo, RowAllocator
from node.store.remembered import RememberedOutcome
from node.store.state import StateMachine
from replication.membership import Configuration
from wal import SnapshotWriter

# 3: remembered keyed writes may carry their request's fingerprint (a sixth
# field); written only when one does, so a cluster still being upgraded,
# whose commands carry none, keeps writing 2, which older nodes read.
FORMAT = 3
READABLE_FORMATS = (2, 3)
BATCH = 2048


@dataclass
class _LibraryImage:
    info: list[Any]
    allocator: list[Any]
    index_state: dict[str, Any]
    documents: list[list[Any]]
    chunk_runs: list[tuple[str, list[list[Any]], list[int]]]
    matrix: npt.NDArray[np.float32] | None

    def records(self) -> Iterator[dict[str, Any]]:
        yield {"library": self.info, "allocator": self.allocator, "index": self.index_state}
        for lo in range(0, len(self.documents), BATCH):
            yield {"documents": self.documents[lo : lo + BATCH]}
        for document_id, items, rows in self.chunk_runs:
            for lo in range(0, len(items), BATCH):
                assert self.matrix is not None
                part = np.ascontiguousarray(self.matrix[rows[lo : lo + BATCH]], dtype="<f4")
                yield {
                    "chunks": document_id,
                    "items": items[lo : lo + BATCH],
                    "vectors": part.tobytes(),
                }


@dataclass
class Image:
    index: int
    term: int
    libraries: list[_LibraryImage]
    requests: list[list[Any]]
    # The member list in force at ``index`` (log index, wire form), if known.
    configuration: tuple[int, dict[str, Any]] | None = None

    def meta(self) -> dict[str, Any]:
        """The snapshot's meta record, beside index and term."""
        fingerprinted = any(len(record) > 5 for record in self.requests)
        meta: dict[str, Any] = {"format": FORMAT if fingerprinted else 2}
        if self.configuration is not None:
            meta["configuration"] = list(self.configuration)
        return meta

    def write(self, writer: SnapshotWriter) -> None:
        for lo in range(0, len(self.requests), BATCH):
            writer.write({"requests": self.requests[lo : lo + BATCH]})
        for library in self.libraries:
            for record in library.records():
                writer.write(record)


def _chunk_item(chunk: ChunkRecord) -> list[Any]:
    return [
        chunk.id,
        chunk.row,
        chunk.text,
        chunk.page_number,
        chunk.chunk_index,
        chunk.created_at,
        chunk.updated_at,
        chunk.server_embedded,
    ]


def _capture_library(library: Library) -> _LibraryImage:
    documents = []
    runs = []
    for document_id in library.document_order.items:
        record = library.documents[document_id]
        fields = dataclasses.astuple(record.fields)
        documents.append(
            [record.id, list(fields), record.created_at, record.updated_at, record.created_index]
        )
        chunks = [library.chunks[chunk_id] for chunk_id in record.chunk_ids]
        if chunks:
            runs.append((record.id, [_chunk_item(c) for c in chunks], [c.row for c in chunks]))
    matrix = library.store.matrix().copy() if library.store is not None else None
    return _LibraryImage(
        info=list(dataclasses.astuple(library.info)),
        allocator=library.rows.state(),
        index_state=library.index.state() if library.index is not None else {},
        documents=documents,
        chunk_runs=runs,
        matrix=matrix,
    )


def capture(state: StateMachine) -> Image:
    libraries = [_capture_library(state.libraries[i]) for i in state.library_order.items]
    held = state.configuration
    configuration = (held[0], held[1].to_wire()) if held is not None else None
    return Image(state.applied_index, state.applied_term, libraries, request_records(state),
                 configuration)  # fmt: skip


def request_records(state: StateMachine) -> list[list[Any]]:
    """The remembered Idempotency-Keys, oldest first (safe on any thread)."""
    return [outcome.record(key) for key, outcome in state.requests.records()]


def restore(state: StateMachine, records: Iterable[Any], index: int, term: int) -> None:
    """Load snapshot records into an empty state machine."""
    if state.libraries or state.applied_index:
        raise RuntimeError("restore needs an empty state machine")
    library: Library | None = None
    index_state: dict[str, Any] = {}
    for record in records:
        if "requests" in record:
            for key, *fields in record["requests"]:
                state.requests.remember(key, RememberedOutcome(*fields))
        elif "library" in record:
            _load_index(library, index_state)
            library = Library(LibraryInfo(*record["library"]))
            next_row, free = record["allocator"]
            library.rows = RowAllocator(next_row, free)
            index_state = record["index"]
            state.add_library(library)
        elif library is None:
            raise ValueError("snapshot records before their library")
        elif "documents" in record:
            for document_id, fields, created_at, updated_at, created_index in record["documents"]:
                document = DocumentRecord(
                    document_id, DocumentFields(*fields), [], created_at, updated_at, created_index
                )
                library.documents[document_id] = document
                library.document_order.add(document_id, created_index)
                code = library.document_columns.allocate(document_id)
                library.document_columns.set_fields(code, document.fields)
        else:
            _restore_chunks(library, record)
    _load_index(library, index_state)
    state.applied_index, state.applied_term = index, term


def _load_index(library: Library | None, index_state: dict[str, Any]) -> None:
    """Once a library's vectors are back, load its index as it was saved."""
    if library is not None and library.index is not None:
        library.index.restore(index_state)


def _restore_chunks(library: Library, record: dict[str, Any]) -> None:
    document = library.documents[record["chunks"]]
    items = record["items"]
    dim = len(record["vectors"]) // 4 // len(items)
    batch = ChunkBatch(
        ids=[item[0] for item in items],
        texts=[item[2] for item in items],
        page_numbers=[item[3] for item in items],
        chunk_indexes=[item[4] for item in items],
        created_at=[item[5] for item in items],
        server_embedded=[item[7] for item in items],
        dim=dim,
        vectors=record["vectors"],
    )
    rows = np.asarray([item[1] for item in items], dtype=np.int64)
    library.restore_chunks(document, batch, rows, [item[6] for item in items])


def configuration_of(meta: dict[str, Any]) -> tuple[int, Configuration] | None:
    """The member list a snapshot's meta record holds, if it holds one."""
    held = meta.get("configuration")
    if held is None:
        return None
    index, wire = held
    return int(index), Configuration.from_wire(wire)
