"""One library's state: documents, chunks, their vectors, index and columns.

Mutations are called by the state machine while it holds ``lock`` for
writing; each checks everything first and raises :class:`Rejected` before it
changes anything, so a rejected command leaves no trace. Vectors go into the
index before any record changes, and an index that fails part way is rebuilt
over the rows as they were, so an unexpected failure leaves no trace either.
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
    CreationOrder,
    DocumentRecord,
    LibraryInfo,
    OrderKey,
    RowAllocator,
)
from node.store.rwlock import RWLock

# Preconditions a write carries in its changes: what the service saw when it
# checked the request. Apply refuses the write (Conflict) when they no longer hold.
IF_SERVER_EMBEDDED = "if_server_embedded"
IF_INDEX = "if_index"


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
        self.document_order = CreationOrder()
        self.rows = RowAllocator()
        self.row_chunk: list[str | None] = []
        # Live chunks whose vector the caller sent (not embedded here): where
        # the library's vectors come from, which text queries depend on.
        self.supplied_vectors = 0
        self.chunk_columns = ChunkColumns()
        self.document_columns = DocumentColumns()
        self.store: VectorStore | None = None
        self.index: VectorIndex | None = None
        if info.dimension is not None:
            self.open_index(info.dimension)
        else:  # the index is built with the first vector; refuse its params now
            indexes.create(info.index_type, dim=1, metric=info.metric, **info.index_params)

    # ------------------------------------------------------------- helpers
    def open_index(self, dim: int) -> None:
        store = VectorStore(dim)
        self.index = indexes.create(
            self.info.index_type,
            dim=dim,
            metric=self.info.metric,
            store=store,
            **self.info.index_params,
        )
        self.store, self.info.dimension = store, dim

    def _index_over_live_rows(self, index_type: str, index_params: dict[str, Any]) -> VectorIndex:
        assert self.store is not None
        live = np.flatnonzero(self.store.live()).astype(np.int64)
        index = indexes.create(
            index_type, dim=self.store.dim, metric=self.info.metric, store=self.store,
            **index_params,
        )  # fmt: skip
        index.add(live, self.store.get(live))
        return index

    def _index_vectors(self, rows: npt.NDArray[np.int64], vectors: npt.NDArray[np.float32]) -> None:
        """Write vectors at rows through the index; if it fails, no read sees a change."""
        if self.index is None:
            self._index_first_vectors(rows, vectors)
            return
        assert self.store is not None
        held = rows[[self.store.is_live(row) for row in rows.tolist()]]
        held_vectors = self.store.get(held)
        try:
            self.index.add(rows, vectors)
        except Exception:
            # Part of the add may have landed: put the rows back as they were
            # and rebuild, the same way on every replica.
            self.store.delete(rows)
            self.store.put(held, held_vectors)
            self.index = self._index_over_live_rows(self.info.index_type, self.info.index_params)
            raise

    def _index_first_vectors(
        self, rows: npt.NDArray[np.int64], vectors: npt.NDArray[np.float32]
    ) -> None:
        """The first vectors fix the dimension and open the index; a failure undoes both."""
        self.open_index(vectors.shape[1])
        assert self.index is not None
        try:
            self.index.add(rows, vectors)
        except Exception:
            self.index, self.store, self.info.dimension = None, None, None
            raise

    def _take_rows(self, batch: ChunkBatch) -> npt.NDArray[np.int64]:
        """Rows for a batch, its vectors already in the index."""
        rows = self.rows.peek(len(batch))
        if len(rows):
            self._index_vectors(rows, batch.matrix())
            self.rows.allocate(len(rows))
        return rows

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
    def add_document(self, command: AddDocument, created_index: int) -> DocumentRecord:
        if command.document_id in self.documents:
            raise Rejected("Conflict", f"document {command.document_id} already exists")
        self._check_batch(command.chunks)
        rows = self._take_rows(command.chunks)
        code = self.document_columns.allocate(command.document_id)
        self.document_columns.set_fields(code, command.fields)
        record = DocumentRecord(
            command.document_id, command.fields, [], command.created_at, command.created_at,
            created_index,
        )  # fmt: skip
        self.documents[record.id] = record
        self.document_order.add(record.id, created_index)
        self._record_chunks(record, command.chunks, rows, [command.created_at] * len(rows))
        return record

    def add_chunks(self, command: AddChunks) -> list[ChunkRecord]:
        record = self.document(command.document_id)
        self._check_batch(command.chunks)
        rows = self._take_rows(command.chunks)
        record.updated_at = command.updated_at
        return self._record_chunks(record, command.chunks, rows, [command.updated_at] * len(rows))

    def restore_chunks(
        self,
        document: DocumentRecord,
        batch: ChunkBatch,
        rows: npt.NDArray[np.int64],
        updated_at: list[int],
    ) -> None:
        """Put a snapshot's chunks back at their rows. The vectors go into the
        store only: the index is loaded from its saved state afterwards."""
        if self.store is None:
            self.open_index(batch.dim)
        assert self.store is not None
        # The allocator was restored first: every row the snapshot holds is
        # below next_row, so one allocation replaces a doubling per batch.
        self.store.reserve(self.rows.next_row)
        self.store.put(rows, batch.matrix())
        self._record_chunks(document, batch, rows, updated_at)

    def _record_chunks(
        self,
        document: DocumentRecord,
        batch: ChunkBatch,
        rows: npt.NDArray[np.int64],
        updated_at: list[int],
    ) -> list[ChunkRecord]:
        """Chunk records and columns for a batch whose vectors are stored at ``rows``."""
        if len(batch) == 0:
            return []
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
            self.supplied_vectors += not chunk.server_embedded
            created.append(chunk)
        document.chunk_ids.extend(batch.ids)
        return created

    def build_index(self, index_type: str, index_params: dict[str, Any]) -> VectorIndex | None:
        """A new index over every live row, in row order, beside the one in use.

        Needs only the read lock: it changes nothing a reader sees (the
        vectors it writes into the shared store are the ones already there),
        so searches go on while it builds. None when there are no vectors
        yet. Raises ValueError, changing nothing, when it cannot be built.
        """
        if self.store is None:
            indexes.create(index_type, dim=1, metric=self.info.metric, **index_params)
            return None
        return self._index_over_live_rows(index_type, index_params)

    def swap_index(
        self, index: VectorIndex | None, index_type: str, index_params: dict[str, Any]
    ) -> None:
        """Put an index from :meth:`build_index` in use (under the write lock)."""
        if index is not None:
            self.index = index
        self.info.index_type, self.info.index_params = index_type, dict(index_params)

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
        self.document_order.remove(document_id, record.created_index)
        self.document_columns.release(document_id)

    def update_chunk(self, command: UpdateChunk) -> ChunkRecord:
        chunk = self.chunk(command.chunk_id)
        changes = dict(command.changes)
        if changes.pop(IF_SERVER_EMBEDDED, False) and not chunk.server_embedded:
            # The new vector embeds the new text because the chunk's vector was
            # the server's; a write in between set a vector of the caller's own.
            raise Rejected(
                "Conflict",
                f"chunk {chunk.id}'s embedding was set by another write after this one "
                "was checked; send the change again",
            )
        row = np.asarray([chunk.row], dtype=np.int64)
        if command.vector is not None:
            self._check_dimension(len(command.vector) // 4, "the new embedding")
            self._index_vectors(row, np.frombuffer(command.vector, dtype="<f4").reshape(1, -1))
        supplied = not chunk.server_embedded
        for name, value in changes.items():
            setattr(chunk, name, value)
        self.supplied_vectors += (not chunk.server_embedded) - supplied
        chunk.updated_at = command.updated_at
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
        self.supplied_vectors -= sum(not chunk.server_embedded for chunk in chunks)
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

    def document_key(self, document_id: str) -> OrderKey | None:
        """The place of a document in listings, if it exists."""
        record = self.documents.get(document_id)
        return None if record is None else (record.created_index, document_id)

    def counts(self) -> dict[str, Any]:
        return {"document_count": len(self.documents), "chunk_count": len(self.chunks)}
