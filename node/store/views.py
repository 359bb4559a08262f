"""Records rendered as the JSON shapes of the REST API.

Called while the library's lock is held, so a view is a consistent copy.
"""

from __future__ import annotations

from typing import Any

from node.store.library import Library
from node.store.records import ChunkRecord, DocumentRecord
from node.timeutil import to_iso


def library_view(library: Library) -> dict[str, Any]:
    info = library.info
    return {
        "id": info.id,
        "name": info.name,
        "description": info.description,
        "dimension": info.dimension,
        "metric": info.metric,
        "index_type": info.index_type,
        "index_params": info.index_params,
        "embedding_model": info.embedding_model,
        "created_at": to_iso(info.created_at),
        "updated_at": to_iso(info.updated_at),
        **library.counts(),
    }


def document_metadata(record: DocumentRecord) -> dict[str, Any]:
    fields = record.fields
    return {
        "title": fields.title,
        "author": fields.author,
        "created_at": to_iso(fields.created_at),
        "document_type": fields.document_type,
        "source_url": fields.source_url,
        "tags": list(fields.tags),
    }


def chunk_metadata(chunk: ChunkRecord) -> dict[str, Any]:
    return {
        "page_number": chunk.page_number,
        "chunk_index": chunk.chunk_index,
        "created_at": to_iso(chunk.created_at),
    }


def chunk_view(library: Library, chunk: ChunkRecord, include_embedding: bool) -> dict[str, Any]:
    view: dict[str, Any] = {
        "id": chunk.id,
        "library_id": library.info.id,
        "document_id": chunk.document_id,
        "text": chunk.text,
        "metadata": chunk_metadata(chunk),
        "updated_at": to_iso(chunk.updated_at),
    }
    if include_embedding:
        view["embedding"] = library.vector(chunk).tolist()
    return view


def document_view(
    library: Library,
    record: DocumentRecord,
    include_chunks: bool = False,
    include_embedding: bool = False,
) -> dict[str, Any]:
    view: dict[str, Any] = {
        "id": record.id,
        "library_id": library.info.id,
        "metadata": document_metadata(record),
        "chunk_count": len(record.chunk_ids),
        "chunk_ids": list(record.chunk_ids),
        "created_at": to_iso(record.created_at),
        "updated_at": to_iso(record.updated_at),
    }
    if include_chunks:
        view["chunks"] = [
            chunk_view(library, library.chunks[chunk_id], include_embedding)
            for chunk_id in record.chunk_ids
        ]
    return view
