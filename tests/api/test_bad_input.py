"""Every bad input is a 4xx problem+json whose detail names the problem,
and the library is unchanged afterwards."""

from __future__ import annotations

import http.client
import json
import time
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


@pytest.mark.parametrize("metric", ["l2", "dot", "cosine"])
def test_embeddings_whose_distances_would_overflow(
    api: httpx.Client, library: Callable[..., dict[str, Any]], metric: str
) -> None:
    """Each value fits 32-bit floats, but a distance to them would not: refused
    (a query against such a row answered 500 once its score was infinite)."""
    lib = library(dimension=2, metric=metric, index_type="hnsw")
    base = f"/libraries/{lib['id']}"
    ok = api.post(f"{base}/documents", json={"chunks": [{"text": "a", "embedding": [1.0, 0.0]}]})
    assert ok.status_code == 201, ok.text
    huge = {"chunks": [{"text": "b", "embedding": [1e20, 1e20]}]}
    problem(api.post(f"{base}/documents", json=huge), 422, "chunks[0].embedding is too long")
    asked = api.post(f"{base}/query", json={"query_embedding": [1e20, 0.0], "k": 2})
    problem(asked, 422, "query_embedding is too long")
    answered = api.post(f"{base}/query", json={"query_embedding": [1.0, 0.0], "k": 2})
    assert answered.status_code == 200 and len(answered.json()["results"]) == 1


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


# Issue 11, poison entries: a value the index or the views cannot use must be
# refused before it is logged; once logged it would fail on every replica.
BAD_INDEX_PARAMS = [
    ("hnsw", {"ef_construction": 200.5}, "ef_construction must be an integer"),
    ("hnsw", {"M": True}, "M must be an integer"),
    ("hnsw", {"ef_search": "64"}, "ef_search must be an integer"),
    ("hnsw", {"repair_threshold": "all"}, "repair_threshold must be a number"),
    ("kd_tree", {"leaf_size": 8.5}, "leaf_size must be an integer"),
    ("lsh", {"tables": 4.0}, "tables must be an integer"),
    ("lsh", {"seed": -3}, "seed must be an integer"),
]


def takes_writes_and_lists(api: httpx.Client, library_id: str, dimension: int = 3) -> None:
    chunk = {"text": "later", "embedding": [0.5] * dimension}
    written = api.post(f"/libraries/{library_id}/documents", json={"chunks": [chunk]})
    assert written.status_code == 201, written.text
    listed = api.get(f"/libraries/{library_id}/documents")
    assert listed.status_code == 200, listed.text
    assert written.json()["id"] in [item["id"] for item in listed.json()["items"]]
    assert api.get("/libraries").status_code == 200


@pytest.mark.parametrize(("kind", "params", "sentence"), BAD_INDEX_PARAMS)
def test_index_params_the_index_cannot_use(
    api: httpx.Client, library: Make, kind: str, params: dict[str, Any], sentence: str
) -> None:
    name = f"poison-{kind}-{sorted(params)[0]}"
    body = {"name": name, "index_type": kind, "index_params": params}
    problem(api.post("/libraries", json=body), 422, f"index_params for {kind}", sentence)
    lib = library(index_type=kind, dimension=3)
    patch = {"index_params": params}
    problem(api.patch(f"/libraries/{lib['id']}", json=patch), 422, sentence)
    switch = {"index_type": kind, "index_params": params}
    flat = library(dimension=3)
    problem(api.patch(f"/libraries/{flat['id']}", json=switch), 422, sentence)
    for library_id in (lib["id"], flat["id"]):
        takes_writes_and_lists(api, library_id)
    assert api.get(f"/libraries/{lib['id']}").json()["index_params"] == lib["index_params"]
    assert api.get(f"/libraries/{flat['id']}").json()["index_type"] == "brute_force"


@pytest.mark.parametrize(
    ("kind", "search"),
    [("hnsw", '{"ef": 1.5}'), ("hnsw", '{"ef": Infinity}'), ("hnsw", '{"ef": true}'),
     ("lsh", '{"probes": "4"}'), ("lsh", '{"probes": -Infinity}')],
)  # fmt: skip
def test_search_params_the_index_cannot_use(
    api: httpx.Client, library: Make, kind: str, search: str
) -> None:
    lib = library(index_type=kind, dimension=3)
    takes_writes_and_lists(api, lib["id"])
    body = f'{{"query_embedding": [1, 2, 3], "search_params": {search}}}'
    response = post_raw(api, f"/libraries/{lib['id']}/query", body)
    problem(response, 422, "search_params:", "must be an integer")


@pytest.mark.parametrize("moment", ["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00"])
def test_created_at_the_views_cannot_show(api: httpx.Client, lib3: str, moment: str) -> None:
    words = ("created_at", "between 0001-01-01T00:00:00Z and 9999-12-31T23:59:59.999999Z")
    documents = f"/libraries/{lib3}/documents"
    as_document = {"metadata": {"created_at": moment}, "chunks": [{"embedding": [1, 2, 3]}]}
    problem(api.post(documents, json=as_document), 422, "metadata.created_at", *words)
    as_chunk = {"chunks": [{"embedding": [1, 2, 3], "metadata": {"created_at": moment}}]}
    problem(api.post(documents, json=as_chunk), 422, "chunks[0].metadata.created_at", *words)
    document = api.get(documents).json()["items"][0]
    chunk_id = document["chunk_ids"][0]
    patch = {"metadata": {"created_at": moment}}
    problem(api.patch(f"{documents}/{document['id']}", json=patch), 422, *words)
    problem(api.patch(f"/libraries/{lib3}/chunks/{chunk_id}", json=patch), 422, *words)
    problem(api.post(f"{documents}/{document['id']}/chunks", json=as_chunk), 422, *words)
    unchanged(api, lib3)
    takes_writes_and_lists(api, lib3)


def test_positions_a_log_entry_cannot_hold(api: httpx.Client, lib3: str) -> None:
    documents = f"/libraries/{lib3}/documents"
    huge = {"chunks": [{"embedding": [1, 2, 3], "metadata": {"page_number": 2**64}}]}
    problem(api.post(documents, json=huge), 422, "chunks[0].metadata.page_number")
    unchanged(api, lib3)
    takes_writes_and_lists(api, lib3)


def test_a_library_without_a_dimension_takes_no_vector_past_the_limit(
    api: httpx.Client, library: Make
) -> None:
    lib = library()  # its width comes from its first vectors
    wide = {"chunks": [{"text": "x", "embedding": [0.5] * 8193}]}
    problem(api.post(f"/libraries/{lib['id']}/documents", json=wide), 422, "8193 values",
            "at most 8192 dimensions")  # fmt: skip
    info = api.get(f"/libraries/{lib['id']}").json()
    assert info["dimension"] is None and info["chunk_count"] == 0
    widest = {"chunks": [{"text": "x", "embedding": [0.5] * 8192}]}
    assert api.post(f"/libraries/{lib['id']}/documents", json=widest).status_code == 201


def test_text_makes_no_more_chunks_than_a_request_may_add(api: httpx.Client, library: Make) -> None:
    lib = library(dimension=256)
    text = " ".join(f"Sentence number {n} is here." for n in range(12_000))
    body = {"text": text, "chunk_size": 50, "chunk_overlap": 0}
    problem(api.post(f"/libraries/{lib['id']}/documents", json=body), 422,
            "more than 10000 chunks of at most 50 characters", "at most 10000 chunks")  # fmt: skip
    # the largest text allowed, one sentence: refused without splitting it all
    started = time.monotonic()
    huge = {"text": "a " * 5_000_000, "chunk_size": 50, "chunk_overlap": 0}
    problem(api.post(f"/libraries/{lib['id']}/documents", json=huge), 422,
            "more than 10000 chunks")  # fmt: skip
    assert time.monotonic() - started < 5.0
    info = api.get(f"/libraries/{lib['id']}").json()
    assert info["document_count"] == 0 and info["chunk_count"] == 0


def test_a_cursor_from_another_document(api: httpx.Client, lib3: str) -> None:
    documents = f"/libraries/{lib3}/documents"
    two = {"chunks": [{"embedding": [1, 2, 3]}, {"embedding": [3, 2, 1]}]}
    first, second = (api.post(documents, json=two).json() for _ in range(2))
    page = api.get(f"{documents}/{second['id']}/chunks", params={"limit": 1}).json()
    foreign = page["next_cursor"]
    assert foreign is not None
    response = api.get(f"{documents}/{first['id']}/chunks", params={"cursor": foreign})
    body = problem(response, 422, f"is not a chunk of document {first['id']}", "next_cursor")
    assert response.headers["X-Shoal-Node"] and body["instance"].endswith("/chunks")
    # the connection still serves (a 500 used to drop it)
    assert api.get(f"{documents}/{first['id']}/chunks").status_code == 200


@pytest.mark.parametrize(
    "where",
    [
        {"field": "page_number", "op": "gt", "value": 2**70},
        {"field": "page_number", "op": "lte", "value": -(2**70)},
        {"field": "chunk_index", "op": "in", "value": [1, 2**64]},
        {"field": "page_number", "op": "eq", "value": 2**63},
        {"field": "page_number", "op": "ne", "value": 10**400},  # beyond any float
        {"field": "chunk_index", "op": "nin", "value": [-(10**4000)]},  # 4,001 digits
    ],
)
def test_filter_numbers_a_number_field_cannot_hold(
    api: httpx.Client, lib3: str, where: dict[str, Any]
) -> None:
    response = api.post(f"/libraries/{lib3}/query",
                        json={"query_embedding": [1, 2, 3], "filters": where})  # fmt: skip
    problem(response, 422, "bits is beyond what a number field holds", "2**63")


def test_session_reads_of_an_index_no_write_could_have_given(api: httpx.Client) -> None:
    far = api.get("/libraries", headers={"X-Shoal-Min-Index": str(10**15)}, timeout=2)
    problem(far, 503, "more than 1,000,000 entries beyond", "X-Shoal-Index")
    beyond = api.get("/libraries", headers={"X-Shoal-Min-Index": "9" * 40})
    problem(beyond, 422, "X-Shoal-Min-Index must be a log index")


def test_a_trailing_slash_redirects_to_a_relative_location(api: httpx.Client) -> None:
    listed = api.get("/libraries/", params={"limit": 1}, headers={"Host": "elsewhere.test"})
    assert listed.status_code == 307
    assert listed.headers["Location"] == "/libraries?limit=1"
    assert listed.headers["X-Shoal-Node"]
    host, port = api.base_url.host, api.base_url.port
    for odd, where in (("//elsewhere.test/", "/elsewhere.test"), ("/libraries//", "/libraries"),
                       ("/\\elsewhere.test/", "/elsewhere.test")):  # fmt: skip
        connection = http.client.HTTPConnection(host, port, timeout=10)
        try:
            connection.request("GET", odd)  # as sent: no client rewrites the path
            answer = connection.getresponse()
            assert answer.status == 307 and answer.getheader("Location") == where
        finally:
            connection.close()


def test_text_queries_against_vectors_no_model_here_made(api: httpx.Client, lib3: str) -> None:
    """lib3 holds only the caller's own vectors; its model is the local
    hashing one, which nobody runs elsewhere: the scores would mean nothing."""
    response = api.post(f"/libraries/{lib3}/query", json={"query_text": "seed"})
    problem(response, 422, "holds only embeddings sent with its chunks", "query_embedding")
    # a question's worker would embed it the same way
    asked = api.post(f"/libraries/{lib3}/ask", json={"question": "what is the seed?"})
    problem(asked, 422, "holds only embeddings sent with its chunks")
    # once the library holds text the node embedded, text queries are answered
    documents = f"/libraries/{lib3}/documents"
    made = api.post(documents, json={"chunks": [{"text": "embedded here"}]})
    assert made.status_code == 201, made.text
    answered = api.post(f"/libraries/{lib3}/query", json={"query_text": "embedded", "k": 5})
    assert answered.status_code == 200, answered.text
    # and refused again when those chunks are gone
    assert api.delete(f"{documents}/{made.json()['id']}").status_code == 204
    problem(api.post(f"/libraries/{lib3}/query", json={"query_text": "seed"}), 422,
            "holds only embeddings sent")  # fmt: skip
