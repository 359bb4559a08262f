"""CRUD round trips against a real node process."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx

Make = Callable[..., dict[str, Any]]


def add_doc(api: httpx.Client, library_id: str, body: dict[str, Any]) -> httpx.Response:
    return api.post(f"/libraries/{library_id}/documents", json=body)


def test_library_round_trip(api: httpx.Client, library: Make) -> None:
    created = library(description="papers", dimension=3, metric="l2")
    assert created["dimension"] == 3 and created["metric"] == "l2"
    assert created["index_type"] == "brute_force"
    assert created["embedding_model"] == "local-hash-v1"
    fetched = api.get(f"/libraries/{created['id']}").json()
    assert fetched == created
    renamed = api.patch(f"/libraries/{created['id']}", json={"name": created["name"] + "-x"})
    assert renamed.status_code == 200 and renamed.json()["name"] == created["name"] + "-x"
    assert int(renamed.headers["X-Shoal-Index"]) > 0
    assert renamed.headers["X-Shoal-Node"] == "n1"
    deleted = api.delete(f"/libraries/{created['id']}")
    assert deleted.status_code == 204 and "X-Shoal-Index" in deleted.headers
    assert api.get(f"/libraries/{created['id']}").status_code == 404


def test_library_names_are_unique(api: httpx.Client, library: Make) -> None:
    first = library()
    again = api.post("/libraries", json={"name": first["name"]})
    assert again.status_code == 409
    assert first["name"] in again.json()["detail"]
    other = library()
    clash = api.patch(f"/libraries/{other['id']}", json={"name": first["name"]})
    assert clash.status_code == 409


def test_libraries_paginate(api: httpx.Client, library: Make) -> None:
    made = {library()["id"] for _ in range(5)}
    seen: list[str] = []
    cursor = None
    for _ in range(100):
        params: dict[str, Any] = {"limit": 2}
        if cursor:
            params["cursor"] = cursor
        page = api.get("/libraries", params=params).json()
        seen += [item["id"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert made <= set(seen) and len(seen) == len(set(seen))
    assert seen == sorted(seen)


def test_document_with_chunks_round_trip(api: httpx.Client, library: Make) -> None:
    lib = library(dimension=3)
    body = {
        "metadata": {
            "title": "Moby Dick",
            "author": "Melville",
            "created_at": "1851-10-18",
            "document_type": "novel",
            "source_url": "https://example.org/moby",
            "tags": ["sea", "whale", "sea"],
        },
        "chunks": [
            {
                "text": "Call me Ishmael.",
                "embedding": [1, 0, 0],
                "metadata": {"page_number": 1, "chunk_index": 0},
            },
            {
                "text": "It is a way I have.",
                "embedding": [0, 1, 0],
                "metadata": {
                    "page_number": 1,
                    "chunk_index": 1,
                    "created_at": "2020-01-02T03:04:05Z",
                },
            },
        ],
    }
    response = add_doc(api, lib["id"], body)
    assert response.status_code == 201, response.text
    document = response.json()
    assert response.headers["Location"].endswith(document["id"])
    assert document["chunk_count"] == 2 and len(document["chunk_ids"]) == 2
    assert document["metadata"]["tags"] == ["sea", "whale"]
    assert document["metadata"]["created_at"] == "1851-10-18T00:00:00.000000Z"
    full = api.get(
        f"/libraries/{lib['id']}/documents/{document['id']}",
        params={"include_chunks": "true", "include_embeddings": "true"},
    ).json()
    texts = [chunk["text"] for chunk in full["chunks"]]
    assert texts == ["Call me Ishmael.", "It is a way I have."]
    assert full["chunks"][0]["embedding"] == [1.0, 0.0, 0.0]
    assert full["chunks"][1]["metadata"]["created_at"] == "2020-01-02T03:04:05.000000Z"
    chunk_id = document["chunk_ids"][1]
    chunk = api.get(f"/libraries/{lib['id']}/chunks/{chunk_id}").json()
    assert chunk["document_id"] == document["id"] and "embedding" not in chunk
    assert api.get(f"/libraries/{lib['id']}").json()["chunk_count"] == 2


def test_document_update_and_delete(api: httpx.Client, library: Make) -> None:
    lib = library()
    document = add_doc(
        api, lib["id"], {"metadata": {"title": "a", "tags": ["x"]}, "chunks": [{"text": "one two"}]}
    ).json()
    path = f"/libraries/{lib['id']}/documents/{document['id']}"
    updated = api.patch(path, json={"metadata": {"author": "zoe", "tags": []}})
    assert updated.status_code == 200, updated.text
    meta = updated.json()["metadata"]
    assert meta["author"] == "zoe" and meta["title"] == "a" and meta["tags"] == []
    assert api.delete(path).status_code == 204
    assert api.get(path).status_code == 404
    chunk = api.get(f"/libraries/{lib['id']}/chunks/{document['chunk_ids'][0]}")
    assert chunk.status_code == 404
    assert api.get(f"/libraries/{lib['id']}").json()["chunk_count"] == 0


def test_chunks_add_update_delete(api: httpx.Client, library: Make) -> None:
    lib = library(dimension=2, metric="dot")
    document = add_doc(api, lib["id"], {"chunks": [{"text": "a", "embedding": [1, 0]}]}).json()
    added = api.post(
        f"/libraries/{lib['id']}/documents/{document['id']}/chunks",
        json={"chunks": [{"text": "b", "embedding": [0, 1]}, {"text": "c", "embedding": [1, 1]}]},
    )
    assert added.status_code == 201, added.text
    new_ids = [item["id"] for item in added.json()["items"]]
    assert len(new_ids) == 2
    listed = api.get(
        f"/libraries/{lib['id']}/documents/{document['id']}/chunks", params={"limit": 2}
    ).json()
    assert [item["text"] for item in listed["items"]] == ["a", "b"]
    rest = api.get(
        f"/libraries/{lib['id']}/documents/{document['id']}/chunks",
        params={"cursor": listed["next_cursor"]},
    ).json()
    assert [item["text"] for item in rest["items"]] == ["c"] and rest["next_cursor"] is None
    path = f"/libraries/{lib['id']}/chunks/{new_ids[0]}"
    patched = api.patch(
        path, json={"text": "B", "embedding": [0, 5], "metadata": {"page_number": 9}}
    )
    assert patched.status_code == 200, patched.text
    got = api.get(path, params={"include_embedding": "true"}).json()
    assert got["text"] == "B" and got["embedding"] == [0, 5] and got["metadata"]["page_number"] == 9
    assert api.delete(path).status_code == 204
    assert api.get(path).status_code == 404
    doc = api.get(f"/libraries/{lib['id']}/documents/{document['id']}").json()
    assert doc["chunk_count"] == 2 and new_ids[0] not in doc["chunk_ids"]


def test_documents_paginate(api: httpx.Client, library: Make) -> None:
    lib = library()
    ids = [
        add_doc(api, lib["id"], {"chunks": [{"text": f"doc {n}"}]}).json()["id"] for n in range(5)
    ]
    first = api.get(f"/libraries/{lib['id']}/documents", params={"limit": 3}).json()
    second = api.get(
        f"/libraries/{lib['id']}/documents", params={"limit": 3, "cursor": first["next_cursor"]}
    ).json()
    assert [d["id"] for d in first["items"] + second["items"]] == ids
    assert second["next_cursor"] is None


def test_a_cursor_outlives_its_document_and_a_bad_one_is_a_422(
    api: httpx.Client, library: Make
) -> None:
    lib = library()
    path = f"/libraries/{lib['id']}/documents"
    ids = [add_doc(api, lib["id"], {"chunks": [{"text": f"{n}"}]}).json()["id"] for n in range(4)]
    first = api.get(path, params={"limit": 2}).json()
    assert api.delete(f"{path}/{ids[1]}").status_code == 204
    rest = api.get(path, params={"cursor": first["next_cursor"]}).json()
    assert [d["id"] for d in rest["items"]] == ids[2:]
    bad = api.get(path, params={"cursor": ids[1]})
    assert bad.status_code == 422
    assert bad.headers["content-type"].startswith("application/problem+json")
    assert "next_cursor" in bad.json()["detail"]


def test_server_side_chunking_and_embedding(api: httpx.Client, library: Make) -> None:
    lib = library()
    text = " ".join(f"Sentence number {n} talks about topic {n % 3}." for n in range(40))
    response = add_doc(api, lib["id"], {"text": text, "chunk_size": 200, "chunk_overlap": 40})
    assert response.status_code == 201, response.text
    document = response.json()
    assert document["chunk_count"] > 5
    assert api.get(f"/libraries/{lib['id']}").json()["dimension"] == 384
    hits = api.post(
        f"/libraries/{lib['id']}/query", json={"query_text": "sentence number 7", "k": 3}
    ).json()["results"]
    assert hits and "number 7" in hits[0]["text"]
