"""Idempotency-Key: a retried write is applied once and answered the same."""

from __future__ import annotations

import uuid

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


def test_bad_keys_are_refused(api: httpx.Client) -> None:
    response = api.post("/libraries", json={"name": "k"}, headers={"Idempotency-Key": "x" * 300})
    assert response.status_code == 422 and "Idempotency-Key" in response.json()["detail"]
