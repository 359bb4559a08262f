"""Each API operation as a :class:`Call` (shared by both clients)."""

from __future__ import annotations

import hashlib
from typing import Any

from shoal_client._protocol import Call
from shoal_client._wire import encode


def _body(**fields: Any) -> dict[str, Any]:
    return {name: value for name, value in fields.items() if value is not None}


def create_library(
    name: str,
    description: str | None,
    dimension: int | None,
    metric: str,
    index_type: str,
    index_params: dict[str, Any] | None,
    embedding_model: str | None,
) -> Call:
    return Call(
        "POST",
        "/libraries",
        _body(
            name=name,
            description=description,
            dimension=dimension,
            metric=metric,
            index_type=index_type,
            index_params=index_params,
            embedding_model=embedding_model,
        ),
        write=True,
    )


def get_library(library_id: str) -> Call:
    return Call("GET", f"/libraries/{library_id}")


def list_libraries(cursor: str | None, limit: int) -> Call:
    return Call("GET", "/libraries", params=_body(cursor=cursor, limit=limit))


def update_library(library_id: str, changes: dict[str, Any]) -> Call:
    return Call("PATCH", f"/libraries/{library_id}", changes, write=True)


def delete_library(library_id: str) -> Call:
    return Call("DELETE", f"/libraries/{library_id}", write=True)


def document_body(
    text: str | None, chunks: list[dict[str, Any]] | None, metadata: dict[str, Any] | None
) -> dict[str, Any]:
    if (text is None) == (chunks is None):
        raise ValueError("give either text or chunks")
    return _body(text=text, chunks=chunks, metadata=metadata)


def add_document(library_id: str, body: dict[str, Any], key: str | None = None) -> Call:
    return Call("POST", f"/libraries/{library_id}/documents", body, write=True, key=key)


def upsert_key(library_id: str, body: dict[str, Any]) -> str:
    """The same document sent again gets the same key, so it is not added twice."""
    return "upsert-" + hashlib.sha256(encode([library_id, body], canonical=True)).hexdigest()


def get_document(
    library_id: str, document_id: str, include_chunks: bool, include_embeddings: bool
) -> Call:
    params = {"include_chunks": include_chunks, "include_embeddings": include_embeddings}
    return Call("GET", f"/libraries/{library_id}/documents/{document_id}", params=params)


def list_documents(library_id: str, cursor: str | None, limit: int) -> Call:
    return Call(
        "GET", f"/libraries/{library_id}/documents", params=_body(cursor=cursor, limit=limit)
    )


def update_document(library_id: str, document_id: str, metadata: dict[str, Any]) -> Call:
    return Call(
        "PATCH",
        f"/libraries/{library_id}/documents/{document_id}",
        {"metadata": metadata},
        write=True,
    )


def delete_document(library_id: str, document_id: str) -> Call:
    return Call("DELETE", f"/libraries/{library_id}/documents/{document_id}", write=True)


def add_chunks(library_id: str, document_id: str, chunks: list[dict[str, Any]]) -> Call:
    return Call(
        "POST",
        f"/libraries/{library_id}/documents/{document_id}/chunks",
        {"chunks": chunks},
        write=True,
    )


def get_chunk(library_id: str, chunk_id: str, include_embedding: bool) -> Call:
    return Call(
        "GET",
        f"/libraries/{library_id}/chunks/{chunk_id}",
        params={"include_embedding": include_embedding},
    )


def update_chunk(
    library_id: str,
    chunk_id: str,
    text: str | None,
    embedding: list[float] | None,
    metadata: dict[str, Any] | None,
) -> Call:
    return Call(
        "PATCH",
        f"/libraries/{library_id}/chunks/{chunk_id}",
        _body(text=text, embedding=embedding, metadata=metadata),
        write=True,
    )


def delete_chunk(library_id: str, chunk_id: str) -> Call:
    return Call("DELETE", f"/libraries/{library_id}/chunks/{chunk_id}", write=True)


def query(
    library_id: str,
    query_text: str | None,
    query_embedding: list[float] | None,
    k: int,
    filters: dict[str, Any] | None,
    include: list[str] | None,
    search_params: dict[str, Any] | None,
    consistency: str | None,
) -> Call:
    if (query_text is None) == (query_embedding is None):
        raise ValueError("give either query_text or query_embedding")
    body = _body(
        query_text=query_text,
        query_embedding=query_embedding,
        k=k,
        filters=filters,
        include=include,
        search_params=search_params,
    )
    params = {"consistency": consistency} if consistency else None
    return Call("POST", f"/libraries/{library_id}/query", body, params=params)


def ask(library_id: str, question: str, k: int, workflow_id: str | None) -> Call:
    return Call(
        "POST",
        f"/libraries/{library_id}/ask",
        _body(question=question, k=k, workflow_id=workflow_id),
    )


def question(workflow_id: str) -> Call:
    return Call("GET", f"/queries/{workflow_id}")


def cancel_question(workflow_id: str) -> Call:
    return Call("POST", f"/queries/{workflow_id}/cancel")
