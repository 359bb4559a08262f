"""Every bad input is a 4xx problem+json whose detail names the problem,
and the library is unchanged afterwards."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.harness import NodeProcess

Make = Callable[..., dict[str, Any]]


def problem(response: httpx.Response, status: int, *words: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    assert body["status"] == status and body["type"].startswith("https://")
    for word in words:
        assert word in body["detail"], (word, body["detail"])
    return body


def post_raw(api: httpx.Client, path: str, text: str) -> httpx.Response:
    return api.post(path, content=text.encode(), headers={"content-type": "application/json"})


@pytest.fixture
def lib3(api: httpx.Client, library: Make) -> str:
    lib = library(dimension=3)
    api.post(
        f"/libraries/{lib['id']}/documents",
        json={"chunks": [{"text": "seed", "embedding": [1, 2, 3]}]},
    )
    return str(lib["id"])


def unchanged(api: httpx.Client, library_id: str) -> None:
    info = api.get(f"/libraries/{library_id}").json()
    assert info["document_count"] == 1 and info["chunk_count"] == 1


def test_dimension_mismatch_names_both_sizes(api: httpx.Client, lib3: str) -> None:
    response = api.post(
        f"/libraries/{lib3}/documents", json={"chunks": [{"text": "x", "embedding": [1, 2]}]}
    )
    problem(response, 422, "2 dimensions", "3-dimensional")
    response = api.post(f"/libraries/{lib3}/query", json={"query_embedding": [1, 2, 3, 4]})
    problem(response, 422, "4 dimensions", "3-dimensional")
    unchanged(api, lib3)


def test_dimension_is_locked_by_first_vector(api: httpx.Client, library: Make) -> None:
    lib = library()
    api.post(
        f"/libraries/{lib['id']}/documents",
        json={"chunks": [{"text": "x", "embedding": [1, 2, 3, 4, 5]}]},
    )
    assert api.get(f"/libraries/{lib['id']}").json()["dimension"] == 5
    response = api.post(
        f"/libraries/{lib['id']}/documents",
        json={"chunks": [{"text": "x", "embedding": [1, 2, 3]}]},
    )
    problem(response, 422, "3 dimensions", "5-dimensional")


def test_mixed_sizes_in_one_request(api: httpx.Client, library: Make) -> None:
    lib = library()
    response = api.post(
        f"/libraries/{lib['id']}/documents",
        json={
            "chunks": [{"text": "a", "embedding": [1, 2]}, {"text": "b", "embedding": [1, 2, 3]}]
        },
    )
    problem(response, 422, "chunks[1].embedding has 3 values", "chunks[0].embedding has 2")
    assert api.get(f"/libraries/{lib['id']}").json()["chunk_count"] == 0


def test_empty_vector(api: httpx.Client, lib3: str) -> None:
    response = api.post(
        f"/libraries/{lib3}/documents", json={"chunks": [{"text": "x", "embedding": []}]}
    )
    problem(response, 422, "chunks[0].embedding is empty")
    unchanged(api, lib3)


@pytest.mark.parametrize("bad", ["NaN", "Infinity", "-Infinity", "1e39"])
def test_non_finite_values(api: httpx.Client, lib3: str, bad: str) -> None:
    good = '{"text": "x", "embedding": [1, 2, 3]}'
    body = f'{{"chunks": [{good}, {{"text": "y", "embedding": [1, {bad}, 3]}}]}}'
    response = post_raw(api, f"/libraries/{lib3}/documents", body)
    problem(response, 422, "chunks[1].embedding contains", "position 1")
    response = post_raw(api, f"/libraries/{lib3}/query", f'{{"query_embedding": [{bad}, 1, 1]}}')
    problem(response, 422, "query_embedding contains")
    unchanged(api, lib3)


def test_zero_vector_with_cosine(api: httpx.Client, lib3: str) -> None:
    response = api.post(
        f"/libraries/{lib3}/documents", json={"chunks": [{"text": "x", "embedding": [0, 0, 0]}]}
    )
    problem(response, 422, "all zeros", "cosine")
    unchanged(api, lib3)


@pytest.mark.parametrize("k", [0, -3])
def test_k_below_one(api: httpx.Client, lib3: str, k: int) -> None:
    response = api.post(f"/libraries/{lib3}/query", json={"query_embedding": [1, 2, 3], "k": k})
    body = problem(response, 422, "k:", "greater than or equal to 1")
    assert body["errors"][0]["loc"] == "k"


def test_query_needs_exactly_one_input(api: httpx.Client, lib3: str) -> None:
    problem(api.post(f"/libraries/{lib3}/query", json={"k": 3}), 422, "exactly one")
    both = {"query_embedding": [1, 2, 3], "query_text": "x"}
    problem(api.post(f"/libraries/{lib3}/query", json=both), 422, "exactly one")


def test_unknown_ids(api: httpx.Client, lib3: str) -> None:
    problem(api.get("/libraries/nope"), 404, "library nope does not exist")
    problem(api.post("/libraries/nope/documents", json={}), 404, "library nope")
    problem(api.post("/libraries/nope/query", json={"query_text": "x"}), 404, "library nope")
    problem(api.get(f"/libraries/{lib3}/documents/nodoc"), 404, "document nodoc")
    problem(api.delete(f"/libraries/{lib3}/documents/nodoc"), 404, "document nodoc")
    problem(
        api.patch(f"/libraries/{lib3}/documents/nodoc", json={"metadata": {"title": "t"}}),
        404,
        "document nodoc",
    )
    problem(
        api.post(
            f"/libraries/{lib3}/documents/nodoc/chunks",
            json={"chunks": [{"text": "x", "embedding": [1, 1, 1]}]},
        ),
        404,
        "nodoc",
    )
    problem(api.get(f"/libraries/{lib3}/chunks/nochunk"), 404, "chunk nochunk")
    problem(api.patch(f"/libraries/{lib3}/chunks/nochunk", json={"text": "t"}), 404, "nochunk")
    problem(api.delete(f"/libraries/{lib3}/chunks/nochunk"), 404, "chunk nochunk")
    problem(api.get("/nowhere"), 404, "no endpoint at /nowhere")
    unchanged(api, lib3)


def test_malformed_filters(api: httpx.Client, lib3: str) -> None:
    base = {"query_embedding": [1, 2, 3]}
    cases = [
        ({"field": "colour", "op": "eq", "value": "x"}, "unknown field 'colour'"),
        ({"field": "page_number", "op": "like", "value": 1}, "operator 'like'"),
        ({"and": [{"field": "author", "op": "eq", "value": 3}]}, "filters.and[0].value"),
        ({"field": "created_at", "op": "gt", "value": "soon"}, "ISO 8601"),
    ]
    for filters, words in cases:
        response = api.post(f"/libraries/{lib3}/query", json={**base, "filters": filters})
        problem(response, 422, words)


def test_schema_errors_are_sentences(api: httpx.Client, lib3: str) -> None:
    problem(api.post("/libraries", json={"name": "x", "metric": "manhattan"}), 422, "metric")
    problem(
        api.post("/libraries", json={"nme": "x"}), 422, "name is required", "unknown field 'nme'"
    )
    problem(
        api.post("/libraries", json={"name": "y", "index_type": "annoy"}),
        422,
        "index_type",
        "brute_force",
    )
    problem(
        api.post("/libraries", json={"name": "z", "embedding_model": "gpt-9"}),
        422,
        "no embedding provider",
        "gpt-9",
    )
    problem(post_raw(api, "/libraries", "{not json"), 400, "not valid JSON")
    problem(api.post("/libraries", content=b'{"name": "q"}'), 400, "Content-Type")
    problem(
        api.post(f"/libraries/{lib3}/documents", json={"chunks": [{"text": "  "}]}),
        422,
        "neither an embedding nor text",
    )
    problem(
        api.post(f"/libraries/{lib3}/documents", json={"text": "a", "chunks": [{"text": "b"}]}),
        422,
        "not both",
    )
    problem(
        api.post(
            f"/libraries/{lib3}/documents",
            json={
                "chunks": [{"text": "x", "embedding": [1, 1, 1], "metadata": {"page_number": -1}}]
            },
        ),
        422,
        "chunks[0].metadata.page_number",
    )
    problem(api.patch(f"/libraries/{lib3}", json={"dimension": 9}), 422, "unknown field")
    unchanged(api, lib3)


def test_over_large_body(start_node: Callable[..., NodeProcess], tmp_path: Path) -> None:
    node = start_node("--max-body-bytes", "4096")
    with node.client() as api:
        lib = api.post("/libraries", json={"name": "big"}).json()
        chunks = [{"text": "x" * 100, "embedding": [0.5] * 64} for _ in range(20)]
        body = json.dumps({"chunks": chunks})
        response = post_raw(api, f"/libraries/{lib['id']}/documents", body)
        problem(response, 413, "4096 bytes")

        def stream() -> Any:  # no Content-Length: the limit applies while reading
            for start in range(0, len(body), 1000):
                yield body[start : start + 1000].encode()

        chunked = api.post(
            f"/libraries/{lib['id']}/documents",
            content=stream(),
            headers={"content-type": "application/json"},
        )
        problem(chunked, 413, "4096 bytes")
        assert api.get(f"/libraries/{lib['id']}").json()["chunk_count"] == 0


def test_api_key(start_node: Callable[..., NodeProcess]) -> None:
    node = start_node("--api-key", "s3cret")
    with node.client() as api:
        assert api.get("/health").status_code == 200
        problem(api.get("/libraries"), 401, "requires an API key")
        problem(api.get("/libraries", headers={"X-API-Key": "wrong"}), 401, "not valid")
        assert api.get("/libraries", headers={"X-API-Key": "s3cret"}).status_code == 200
        bearer = {"Authorization": "Bearer s3cret"}
        assert api.get("/libraries", headers=bearer).status_code == 200
