"""Routes that write their answer straight from the views (node/responses.py)
still answer exactly the shape their OpenAPI response model documents: the
JSON, read into the model and written out again, is unchanged."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
from pydantic import BaseModel

from node import models


def _conforms(response: httpx.Response, model: type[BaseModel], status: int = 200) -> Any:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert model.model_validate(body).model_dump(mode="json") == body
    return body


def test_every_fast_route_answers_its_documented_shape(
    api: httpx.Client, library: Callable[..., dict[str, Any]]
) -> None:
    lib = library(dimension=3, metric="cosine")
    base = f"/libraries/{lib['id']}"
    chunk = {"text": "hello", "embedding": [1.0, 0.0, 0.5], "metadata": {"page_number": 2}}
    created = api.post(f"{base}/documents", json={
        "metadata": {"title": "T", "author": "A", "created_at": "2024-01-02T03:04:05Z",
                     "tags": ["x", "y"], "source_url": "https://example.org/d"},
        "chunks": [chunk, {"text": "", "embedding": [0.0, 1.0, 0.0]}],
    })  # fmt: skip
    document = _conforms(created, models.Document, 201)
    assert created.headers["X-Shoal-Index"].isdigit()
    assert created.headers["Location"] == f"{base}/documents/{document['id']}"
    added = api.post(f"{base}/documents/{document['id']}/chunks", json={"chunks": [chunk]})
    _conforms(added, models.ChunkList, 201)
    assert added.headers["X-Shoal-Index"].isdigit()

    _conforms(api.get(base), models.Library)
    _conforms(api.get("/libraries", params={"limit": 2}), models.LibraryPage)
    _conforms(api.get(f"{base}/documents"), models.DocumentPage)
    for flags in ({}, {"include_chunks": "true"},
                  {"include_chunks": "true", "include_embeddings": "true"}):  # fmt: skip
        _conforms(api.get(f"{base}/documents/{document['id']}", params=flags), models.Document)
    for flags in ({}, {"include_embeddings": "true"}):
        page = api.get(f"{base}/documents/{document['id']}/chunks", params={**flags, "limit": 1})
        assert _conforms(page, models.ChunkPage)["next_cursor"] is not None
    chunk_id = document["chunk_ids"][0]
    for flags in ({}, {"include_embedding": "true"}):
        _conforms(api.get(f"{base}/chunks/{chunk_id}", params=flags), models.Chunk)
    for include in (None, ["text"], ["metadata", "embedding", "document"]):
        body: dict[str, Any] = {"query_embedding": [1.0, 0.1, 0.2], "k": 3}
        if include is not None:
            body["include"] = include
        answer = _conforms(api.post(f"{base}/query", json=body), models.QueryResponse)
        assert len(answer["results"]) == 3
