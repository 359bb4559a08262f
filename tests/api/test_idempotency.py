"""Idempotency-Key: a retried write is applied once and answered the same."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import httpx


def test_retried_writes_apply_once(api: httpx.Client) -> None:
    key = {"Idempotency-Key": f"create-{uuid.uuid4()}"}
    name = f"idem-{uuid.uuid4().hex[:8]}"
    first = api.post("/libraries", json={"name": name}, headers=key)
    again = api.post("/libraries", json={"name": name}, headers=key)
    assert first.status_code == again.status_code == 201
    assert first.json()["id"] == again.json()["id"]
    assert first.headers["X-Shoal-Index"] == again.headers["X-Shoal-Index"]
    library_id = first.json()["id"]
    doc_key = {"Idempotency-Key": f"doc-{uuid.uuid4()}"}
    body = {"chunks": [{"text": "once", "embedding": [1.0, 2.0]}]}
    one = api.post(f"/libraries/{library_id}/documents", json=body, headers=doc_key)
    two = api.post(f"/libraries/{library_id}/documents", json=body, headers=doc_key)
    assert one.json()["id"] == two.json()["id"]
    assert api.get(f"/libraries/{library_id}").json()["document_count"] == 1
    # without a key the same body is a second document
    api.post(f"/libraries/{library_id}/documents", json=body)
    assert api.get(f"/libraries/{library_id}").json()["document_count"] == 2


def test_a_failed_keyed_write_fails_the_same_way(api: httpx.Client) -> None:
    key = {"Idempotency-Key": f"missing-{uuid.uuid4()}"}
    first = api.delete("/libraries/not-there", headers=key)
    again = api.delete("/libraries/not-there", headers=key)
    assert first.status_code == again.status_code == 404


def test_a_document_of_10000_chunks_is_answered_alike_on_retry(
    api: httpx.Client, library: Callable[..., dict[str, Any]]
) -> None:
    lib = library()
    key = {"Idempotency-Key": f"big-{uuid.uuid4()}"}
    body = {"chunks": [{"text": f"c{n}", "embedding": [1.0, n]} for n in range(10_000)]}
    one = api.post(f"/libraries/{lib['id']}/documents", json=body, headers=key)
    two = api.post(f"/libraries/{lib['id']}/documents", json=body, headers=key)
    assert one.status_code == two.status_code == 201
    assert one.json() == two.json() and len(one.json()["chunk_ids"]) == 10_000


def test_a_retry_whose_answer_was_too_large_to_keep_is_a_409(
    api: httpx.Client, library: Callable[..., dict[str, Any]]
) -> None:
    lib = library()
    document = api.post(f"/libraries/{lib['id']}/documents", json={"chunks": []}).json()
    path = f"/libraries/{lib['id']}/documents/{document['id']}/chunks"
    key = {"Idempotency-Key": f"huge-{uuid.uuid4()}"}
    # about 10 MB of chunk text, which the answer repeats
    body = {"chunks": [{"text": "y" * 5000, "embedding": [1.0, n]} for n in range(2000)]}
    first = api.post(path, json=body, headers=key)
    again = api.post(path, json=body, headers=key)
    assert first.status_code == 201, first.text
    assert again.status_code == 409
    assert again.headers["content-type"].startswith("application/problem+json")
    assert "too large to keep" in again.json()["detail"]
    got = api.get(f"/libraries/{lib['id']}/documents/{document['id']}").json()
    assert got["chunk_count"] == 2000


def test_bad_keys_are_refused(api: httpx.Client) -> None:
    response = api.post("/libraries", json={"name": "k"}, headers={"Idempotency-Key": "x" * 300})
    assert response.status_code == 422 and "Idempotency-Key" in response.json()["detail"]


def test_a_key_used_again_for_another_request_is_refused_and_applies_nothing(
    api: httpx.Client, library: Callable[..., dict[str, Any]]
) -> None:
    lib = library()
    path = f"/libraries/{lib['id']}/documents"
    key = {"Idempotency-Key": f"reused-{uuid.uuid4()}"}
    first = api.post(path, json={"chunks": [{"text": "first", "embedding": [1.0, 2.0]}]},
                     headers=key)  # fmt: skip
    assert first.status_code == 201
    other_body = api.post(path, json={"chunks": [{"text": "second", "embedding": [3.0, 4.0]}]},
                          headers=key)  # fmt: skip
    other_path = api.post("/libraries", json={"name": f"x-{uuid.uuid4().hex[:6]}"}, headers=key)
    for refused in (other_body, other_path):
        assert refused.status_code == 422, refused.text
        problem = refused.json()
        assert problem["type"].endswith("/idempotency-key-reused")
        assert (
            "different request" in problem["detail"] and "nothing was applied" in problem["detail"]
        )
    assert api.get(f"/libraries/{lib['id']}").json()["document_count"] == 1
    # The first request, sent again byte for byte, still gets its own answer.
    again = api.post(path, content=first.request.content, headers={
        **key, "content-type": "application/json"})  # fmt: skip
    assert again.status_code == 201 and again.json()["id"] == first.json()["id"]
