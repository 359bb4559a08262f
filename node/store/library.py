"""One library's state: documents, chunks, their vectors, index and columns.

Mutations are called by the state machine while it holds ``lock`` for
writing; each checks everything first and raises :class:`Rejected` before it
changes anything, so a rejected command leaves no trace.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import numpy.typing as npt

import indexes
from indexes import VectorIndex, VectorStore
from node.commands import AddChunks, AddDocument, ChunkBatch, UpdateChunk, UpdateDocument
from node.filters import Columns, Filter
from node.store.columns import ChunkColumns, DocumentColumns
from node.store.records import (
    ChunkRecord,
    DocumentRecord,
    LibraryInfo,
    RowAllocator,
    SortedIds,
)
from node.store.rwlock import RWLock


class Rejected(Exception):
    """A committed command that cannot apply; deterministic on every replica."""

    def __init__(self, error: str, detail: str) -> None:
        super().__init__(detail)
        self.error = error
        self.detail = detail


class Library:
    def __init__(self, info: LibraryInfo) -> None:
        self.info = info
        self.lock = RWLock()
        self.documents: dict[str, DocumentRecord] = {}
        self.chunks: dict[str, ChunkRecord] = {}
        self.document_order = SortedIds()
        self.rows = RowAllocator()
        self.row_chunk: list[str | None] = []
        self.chunk_columns = ChunkColumns()
        self.document_columns = DocumentColumns()
        self.store: VectorStore | None = None
        self.index: VectorIndex | None = None
        if info.dimension is not None:
            self.open_index(info.dimension)

    # ------------------------------------------------------------- helpers
    def open_index(self, dim: int) -> None:
        self.info.dimension = dim
        self.store = VectorStore(dim)
        self.index = indexes.create(
            self.info.index_type,
            dim=dim,
            metric=self.info.metric,
            store=self.store,
            **self.info.index_params,
        )

    def _check_dimension(self, dim: int, what: str) -> None:
        expected = self.info.dimension
        if expected is not None and dim != expected:
            raise Rejected(
                "DimensionMismatch",
                f"{what} has {dim} dimensions but library {self.info.id} holds "
                f"{expected}-dimensional vectors",
            )

    def _check_batch(self, batch: ChunkBatch) -> None:
        if len(batch) == 0:
            return
        self._check_dimension(batch.dim, "the embedding")
        taken = [chunk_id for chunk_id in batch.ids if chunk_id in self.chunks]
        if taken or len(set(batch.ids)) != len(batch.ids):
            raise Rejected("Conflict", f"chunk ids already in use: {taken[:5]}")

    def document(self, document_id: str) -> DocumentRecord:
        record = self.documents.get(document_id)
        if record is None:
            raise Rejected(
                "NotFound",
                f"document {document_id} does not exist in library {self.info.id}",
            )
        return record

    def chunk(self, chunk_id: str) -> ChunkRecord:
        record = self.chunks.get(chunk_id)
        if record is None:
            raise Rejected("NotFound", f"chunk {chunk_id} does not exist in library {self.info.id}")
        return record

    # ----------------------------------------------------------- mutations
    def add_document(self, command: AddDocument) -> DocumentRecord:
        if command.document_id in self.documents:
            raise Rejected("Conflict", f"document {command.document_id} already exists")
        self._check_batch(command.chunks)
        code = self.document_columns.allocate(command.document_id)
        self.document_columns.set_fields(code, command.fields)
        record = DocumentRecord(
            command.document_id, command.fields, [], command.created_at, command.created_at
        )
        self.documents[record.id] = record
        self.document_order.add(record.id)
        self._insert_chunks(record, command.chunks, command.created_at)
        return record

    def add_chunks(self, command: AddChunks) -> list[ChunkRecord]:
        record = self.document(command.document_id)
        self._check_batch(command.chunks)
        record.updated_at = command.updated_at
        return self._insert_chunks(record, command.chunks, command.updated_at)

    def _insert_chunks(
        self, document: DocumentRecord, batch: ChunkBatch, stamp: int
    ) -> list[ChunkRecord]:
        if len(batch) == 0:
            return []
        rows = self.rows.allocate(len(batch))
        return self.place_chunks(document, batch, rows, [stamp] * len(batch))

    def place_chunks(
        self,
        document: DocumentRecord,
        batch: ChunkBatch,
        rows: npt.NDArray[np.int64],
        updated_at: list[int],
        index_them: bool = True,
    ) -> list[ChunkRecord]:
        """Put a batch's chunks at the given rows (used by apply and restore).

        Restore passes ``index_them=False``: the vectors go into the store and
        the index is loaded from its saved state afterwards.
        """
        if self.index is None:
            self.open_index(batch.dim)
        assert self.index is not None and self.store is not None
        if index_them:
            self.index.add(rows, batch.matrix())
        else:
            self.store.put(rows, batch.matrix())
        self.chunk_columns.set_rows(
            rows,
            self.document_columns.codes[document.id],
            batch.page_numbers,
            batch.chunk_indexes,
            batch.created_at,
        )
        top = int(rows.max()) + 1
        if len(self.row_chunk) < top:
            self.row_chunk.extend([None] * (top - len(self.row_chunk)))
        created = []
        for n, row in enumerate(rows.tolist()):
            chunk = ChunkRecord(
                id=batch.ids[n],
                document_id=document.id,
                row=row,
                text=batch.texts[n],
                page_number=batch.page_numbers[n],
                chunk_index=batch.chunk_indexes[n],
                created_at=batch.created_at[n],
                updated_at=updated_at[n],
                server_embedded=batch.server_embedded[n],
            )
            self.chunks[chunk.id] = chunk
            self.row_chunk[row] = chunk.id
            created.append(chunk)
        document.chunk_ids.extend(batch.ids)
        return created

    def rebuild_index(self, index_type: str, index_params: dict[str, Any]) -> None:
        """Replace the index with a new one built over every live row, in row order."""
        self.info.index_type, self.info.index_params = index_type, dict(index_params)
        if self.store is None:
            return
        live = np.flatnonzero(self.store.live()).astype(np.int64)
        vectors = self.store.get(live)
        self.index = indexes.create(
            index_type, dim=self.store.dim, metric=self.info.metric, store=self.store,
            **index_params,
        )  # fmt: skip
        self.index.add(live, vectors)

    def update_document(self, command: UpdateDocument) -> DocumentRecord:
        record = self.document(command.document_id)
        record.fields = dataclasses.replace(record.fields, **command.changes)
        record.updated_at = command.updated_at
        self.document_columns.set_fields(self.document_columns.codes[record.id], record.fields)
        return record

    def delete_document(self, document_id: str) -> None:
        record = self.document(document_id)
        self._remove_rows([self.chunks[chunk_id] for chunk_id in record.chunk_ids])
        for chunk_id in record.chunk_ids:
            del self.chunks[chunk_id]
        del self.documents[document_id]
        self.document_order.remove(document_id)
        self.document_columns.release(document_id)

    def update_chunk(self, command: UpdateChunk) -> ChunkRecord:
        chunk = self.chunk(command.chunk_id)
        if command.vector is not None:
            dim = len(command.vector) // 4
            self._check_dimension(dim, "the new embedding")
        for name, value in command.changes.items():
            setattr(chunk, name, value)
        chunk.updated_at = command.updated_at
        row = np.asarray([chunk.row], dtype=np.int64)
        if command.vector is not None:
            if self.index is None:
                self.open_index(len(command.vector) // 4)
            assert self.index is not None
            vector = np.frombuffer(command.vector, dtype="<f4").reshape(1, -1)
            self.index.add(row, vector)
        self.chunk_columns.set_rows(
            row,
            self.document_columns.codes[chunk.document_id],
            [chunk.page_number],
            [chunk.chunk_index],
            [chunk.created_at],
        )
        return chunk

    def delete_chunk(self, chunk_id: str) -> None:
        chunk = self.chunk(chunk_id)
        self._remove_rows([chunk])
        document = self.documents[chunk.document_id]
        document.chunk_ids.remove(chunk_id)
        del self.chunks[chunk_id]

    def _remove_rows(self, chunks: list[ChunkRecord]) -> None:
        if not chunks:
            return
        rows = np.asarray([chunk.row for chunk in chunks], dtype=np.int64)
        assert self.index is not None
        self.index.remove(rows)
        self.chunk_columns.clear_rows(rows)
        for row in rows.tolist():
            self.row_chunk[row] = None
        self.rows.release(rows)

    # --------------------------------------------------------------- reads
    def search(
        self,
        query: npt.NDArray[np.float32],
        k: int,
        where: Filter | None,
        search_params: dict[str, Any] | None = None,
    ) -> tuple[list[str], npt.NDArray[np.float32]]:
        """Chunk ids and scores of the best ``k`` matches. Caller holds the read lock."""
        if self.index is None or self.store is None:
            return [], np.empty(0, dtype=np.float32)
        mask = None
        if where is not None:
            rows = max(self.chunk_columns.size, self.store.size)
            mask = where.mask(Columns(self.chunk_columns, self.document_columns, rows))
        found_rows, scores = self.index.search(query, k, mask, **(search_params or {}))
        ids = [self.row_chunk[row] for row in found_rows.tolist()]
        return [chunk_id for chunk_id in ids if chunk_id is not None], scores

    def vector(self, chunk: ChunkRecord) -> npt.NDArray[np.float32]:
        assert self.store is not None
        row: npt.NDArray[np.float32] = self.store.get(np.asarray([chunk.row]))[0]
        return row

    def vectors(self, rows: list[int]) -> npt.NDArray[np.float32]:
        if self.store is None:
            return np.empty((0, self.info.dimension or 0), dtype=np.float32)
        return self.store.get(np.asarray(rows, dtype=np.int64))

    def counts(self) -> dict[str, Any]:
        return {"document_count": len(self.documents), "chunk_count": len(self.chunks)}
