"""A digest of the applied state, equal on replicas that applied the same log.

Covers every library and document in listing order (with the log index that
created each), every chunk in id order (vector rows and free rows too), each
index's persistent state and the remembered keyed writes. Not covered: caches
and internal codes that do not change what any request returns.

The bytes hashed are fixed: backups carry a digest that a later version
checks on restore. Records are packed in slices and vectors hashed in
slices of rows, so a large state costs no second copy of itself in memory.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable, Iterable
from operator import attrgetter
from typing import Any

import msgpack
import numpy as np

from node.commands import DocumentFields
from node.store.library import Library
from node.store.records import ChunkRecord, DocumentRecord
from node.store.snapshot_codec import request_records
from node.store.state import StateMachine

# Rows hashed per slice of the vector matrix (24 MiB at 384 dimensions).
VECTOR_SLICE = 16_384
# Records packed before each update of the hash.
RECORD_SLICE = 4_096

_chunk_fields: Callable[[ChunkRecord], tuple[Any, ...]] = attrgetter(
    *(field.name for field in dataclasses.fields(ChunkRecord))
)
_document_fields_of: Callable[[DocumentFields], tuple[Any, ...]] = attrgetter(
    *(field.name for field in dataclasses.fields(DocumentFields))
)


def _pack(value: object) -> bytes:
    return msgpack.packb(value, use_bin_type=True)


def _document_fields(record: DocumentRecord) -> list[Any]:
    # Every field value is a scalar or a list of scalars: msgpack packs these
    # tuples as dataclasses.astuple's, which copies them first.
    return [record.id, _document_fields_of(record.fields), record.chunk_ids,
            record.created_at, record.updated_at, record.created_index]  # fmt: skip


def _hash_records(hasher: Any, records: Iterable[Any]) -> None:
    """Hash the msgpack of each record in turn (the same bytes as packing
    them one by one), a slice at a time."""
    packer = msgpack.Packer(use_bin_type=True, autoreset=False)
    count = 0
    for record in records:
        packer.pack(record)
        count += 1
        if count == RECORD_SLICE:
            hasher.update(packer.bytes())
            packer.reset()
            count = 0
    hasher.update(packer.bytes())


def _library_digest(library: Library, hasher: Any) -> None:
    hasher.update(_pack(list(dataclasses.astuple(library.info))))
    hasher.update(_pack(library.rows.state()))
    hasher.update(_pack(library.index.state() if library.index is not None else {}))
    documents = library.documents
    _hash_records(hasher, (_document_fields(documents[document_id])
                           for document_id in library.document_order.items))  # fmt: skip
    chunks = [library.chunks[chunk_id] for chunk_id in sorted(library.chunks)]
    _hash_records(hasher, map(_chunk_fields, chunks))
    if not chunks or library.store is None:
        return
    rows = np.fromiter((chunk.row for chunk in chunks), dtype=np.int64, count=len(chunks))
    matrix = library.store.buffer()
    for start in range(0, len(rows), VECTOR_SLICE):
        part = matrix[rows[start : start + VECTOR_SLICE]]
        hasher.update(np.ascontiguousarray(part, dtype="<f4"))


def state_digest(state: StateMachine) -> str:
    """Hex sha256 of the state. Take the libraries' read locks around it."""
    hasher = hashlib.sha256()
    hasher.update(_pack(request_records(state)))
    for library_id in list(state.library_order.items):
        library = state.libraries.get(library_id)
        if library is None:
            continue
        with library.lock.read():
            _library_digest(library, hasher)
    return hasher.hexdigest()
