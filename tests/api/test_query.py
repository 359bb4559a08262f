"""kNN queries with filters, against a real node, checked against numpy."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import numpy as np
import pytest

Make = Callable[..., dict[str, Any]]
DIM = 16


@pytest.fixture
def filled(api: httpx.Client, library: Make) -> tuple[str, np.ndarray, list[dict[str, Any]]]:
    """A library of 6 documents x 10 chunks with known vectors and metadata."""
    lib = library(dimension=DIM, metric="cosine")
    rng = np.random.default_rng(42)
    vectors = rng.standard_normal((60, DIM)).astype(np.float32)
    rows: list[dict[str, Any]] = []
    for d in range(6):
        chunks = []
        for c in range(10):
            n = d * 10 + c
            chunks.append(
                {
                    "text": f"chunk {n}",
                    "embedding": vectors[n].tolist(),
                    "metadata": {"page_number": c, "chunk_index": c},
                }
            )
        metadata = {
            "title": f"doc {d}",
            "author": ["ann", "bob", "cy"][d % 3],
            "created_at": f"202{d}-01-01",
            "tags": [["a"], ["b"], ["a", "b"]][d % 3],
        }
        body = {"metadata": metadata, "chunks": chunks}
        document = api.post(f"/libraries/{lib['id']}/documents", json=body).json()
        for c, chunk_id in enumerate(document["chunk_ids"]):
            rows.append(
                {
                    "n": d * 10 + c,
                    "chunk_id": chunk_id,
                    "page": c,
                    "author": ["ann", "bob", "cy"][d % 3],
                    "year": 2020 + d,
                    "tags": [{"a"}, {"b"}, {"a", "b"}][d % 3],
                    "document_id": document["id"],
                }
            )
    return lib["id"], vectors, rows


def expected(
    vectors: np.ndarray,
    rows: list[dict[str, Any]],
    query: np.ndarray,
    k: int,
    keep: Callable[[dict[str, Any]], bool],
) -> list[str]:
    scores = (vectors @ query) / (np.linalg.norm(vectors, axis=1) * np.linalg.norm(query))
    allowed = [row for row in rows if keep(row)]
    allowed.sort(key=lambda row: -scores[row["n"]])
    return [row["chunk_id"] for row in allowed[:k]]


def query(api: httpx.Client, library_id: str, **body: Any) -> httpx.Response:
    return api.post(f"/libraries/{library_id}/query", json=body)


def test_exact_results_and_shape(api: httpx.Client, filled: Any) -> None:
    library_id, vectors, rows = filled
    q = vectors[7] + 0.1
    response = query(api, library_id, query_embedding=q.tolist(), k=5)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["exact"] is True and body["metric"] == "cosine" and body["k"] == 5
    hits = body["results"]
    assert [hit["chunk_id"] for hit in hits] == expected(vectors, rows, q, 5, lambda r: True)
    assert hits[0]["text"] == "chunk 7"
    assert hits[0]["metadata"]["page_number"] == 7
    assert abs(hits[0]["score"] + hits[0]["distance"] - 1) < 1e-5
    assert all(a["score"] >= b["score"] for a, b in zip(hits, hits[1:], strict=False))


@pytest.mark.parametrize(
    ("filters", "keep"),
    [
        ({"field": "author", "op": "eq", "value": "bob"}, lambda r: r["author"] == "bob"),
        ({"field": "page_number", "op": "gte", "value": 8}, lambda r: r["page"] >= 8),
        (
            {
                "and": [
                    {"field": "page_number", "op": "gt", "value": 2},
                    {"field": "page_number", "op": "lt", "value": 5},
                ]
            },
            lambda r: 2 < r["page"] < 5,
        ),
        (
            {"field": "document.created_at", "op": "gte", "value": "2023-06-01"},
            lambda r: r["year"] >= 2024,
        ),
        (
            {"field": "tags", "op": "contains_all", "value": ["a", "b"]},
            lambda r: r["tags"] == {"a", "b"},
        ),
        ({"field": "tags", "op": "contains_any", "value": ["b"]}, lambda r: "b" in r["tags"]),
        (
            {
                "or": [
                    {"field": "author", "op": "in", "value": ["ann"]},
                    {"not": {"field": "page_number", "op": "lte", "value": 8}},
                ]
            },
            lambda r: r["author"] == "ann" or r["page"] > 8,
        ),
    ],
)
def test_filtered_queries_return_only_and_enough_matches(
    api: httpx.Client, filled: Any, filters: dict[str, Any], keep: Callable[..., bool]
) -> None:
    library_id, vectors, rows = filled
    q = vectors[33]
    hits = query(api, library_id, query_embedding=q.tolist(), k=12, filters=filters).json()
    got = [hit["chunk_id"] for hit in hits["results"]]
    assert got == expected(vectors, rows, q, 12, keep)


def test_include_controls_fields(api: httpx.Client, filled: Any) -> None:
    library_id, vectors, _ = filled
    hit = query(
        api, library_id, query_embedding=vectors[0].tolist(), k=1, include=["embedding", "document"]
    ).json()["results"][0]
    assert "text" not in hit and "metadata" not in hit
    assert hit["embedding"] == pytest.approx(vectors[0].tolist(), rel=1e-6)
    assert hit["document"]["metadata"]["title"] == "doc 0"


def test_k_larger_than_library(api: httpx.Client, filled: Any) -> None:
    library_id, vectors, _ = filled
    hits = query(api, library_id, query_embedding=vectors[0].tolist(), k=1000).json()
    assert len(hits["results"]) == 60


def test_query_on_empty_library(api: httpx.Client, library: Make) -> None:
    lib = library()
    response = query(api, lib["id"], query_text="anything", k=3)
    assert response.status_code == 200 and response.json()["results"] == []


@pytest.mark.parametrize("metric", ["dot", "l2"])
def test_other_metrics(api: httpx.Client, library: Make, metric: str) -> None:
    lib = library(metric=metric)
    vectors = [[0, 0], [1, 1], [3, 3], [-2, 0]]
    api.post(
        f"/libraries/{lib['id']}/documents",
        json={"chunks": [{"text": str(v), "embedding": v} for v in vectors]},
    )
    hits = query(api, lib["id"], query_embedding=[1, 1], k=4).json()["results"]
    texts = [hit["text"] for hit in hits]
    if metric == "dot":
        assert texts[0] == "[3, 3]" and hits[0]["score"] == pytest.approx(6.0)
        assert hits[0]["distance"] == pytest.approx(-6.0)
    else:
        assert texts[:2] == ["[1, 1]", "[0, 0]"]
        assert hits[1]["distance"] == pytest.approx(2**0.5, rel=1e-5)
        assert hits[1]["score"] == pytest.approx(-(2**0.5), rel=1e-5)
