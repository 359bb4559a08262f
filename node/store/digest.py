"""A digest of the applied state, equal on replicas that applied the same log.

Covers every library and document in listing order (with the log index that
created each), every chunk in id order (vector rows and free rows too), each
index's persistent state and the remembered keyed writes. Not covered: caches
and internal codes that do not change what any request returns.
"""

from __future__ import annotations

import dataclasses
import hashlib

import msgpack
import numpy as np

from node.store.library import Library
from node.store.snapshot_codec import request_records
from node.store.state import StateMachine


def _pack(value: object) -> bytes:
    return msgpack.packb(value, use_bin_type=True)


def _library_digest(library: Library, hasher: hashlib._Hash) -> None:
    hasher.update(_pack(list(dataclasses.astuple(library.info))))
    hasher.update(_pack(library.rows.state()))
    hasher.update(_pack(library.index.state() if library.index is not None else {}))
    for document_id in library.document_order.items:
        record = library.documents[document_id]
        fields = list(dataclasses.astuple(record.fields))
        hasher.update(_pack([record.id, fields, record.chunk_ids, record.created_at,
                             record.updated_at, record.created_index]))  # fmt: skip
    chunk_ids = sorted(library.chunks)
    rows = []
    for chunk_id in chunk_ids:
        chunk = library.chunks[chunk_id]
        rows.append(chunk.row)
        hasher.update(_pack(list(dataclasses.astuple(chunk))))
    if rows:
        hasher.update(np.ascontiguousarray(library.vectors(rows), dtype="<f4").tobytes())


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
