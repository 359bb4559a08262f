"""Index types through the REST API: choose, query, switch."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import numpy as np
import pytest

import indexes

Make = Callable[..., dict[str, Any]]
DIM = 16


def fill(api: httpx.Client, library_id: str, count: int = 400) -> np.ndarray:
    vectors = np.random.default_rng(5).normal(size=(count, DIM)).astype(np.float32)
    for start in range(0, count, 100):
        chunks = [
            {
                "text": f"row {n}",
                "embedding": vectors[n].tolist(),
                "metadata": {"page_number": n % 7},
            }
            for n in range(start, start + 100)
        ]
        response = api.post(f"/libraries/{library_id}/documents", json={"chunks": chunks})
        assert response.status_code == 201, response.text
    return vectors


def top(api: httpx.Client, library_id: str, query: np.ndarray, **extra: Any) -> list[str]:
    response = api.post(
        f"/libraries/{library_id}/query", json={"query_embedding": query.tolist(), "k": 10, **extra}
    )
    assert response.status_code == 200, response.text
    return [hit["text"] for hit in response.json()["results"]]


def exact(vectors: np.ndarray, query: np.ndarray, keep: np.ndarray | None = None) -> list[str]:
    scores = vectors @ query / np.linalg.norm(vectors, axis=1)
    if keep is not None:
        scores = np.where(keep, scores, -np.inf)
    return [f"row {n}" for n in np.argsort(-scores)[:10]]


@pytest.mark.parametrize("kind", [k for k in indexes.KINDS if k != "brute_force"])
def test_index_type_per_library(api: httpx.Client, library: Make, kind: str) -> None:
    # A fixed seed keeps the approximate indexes' answers the same on every run.
    params = {"seed": 11} if kind in indexes.SEEDED else {}
    lib = library(dimension=DIM, index_type=kind, index_params=params)
    assert lib["index_type"] == kind and lib["index_params"] == params
    vectors = fill(api, lib["id"])
    queries = np.random.default_rng(6).normal(size=(20, DIM)).astype(np.float32)
    overlap = np.mean(
        [len(set(top(api, lib["id"], q)) & set(exact(vectors, q))) / 10 for q in queries]
    )
    assert overlap >= 0.9
    keep = np.arange(len(vectors)) % 7 == 3
    filtered = top(
        api, lib["id"], queries[0], filters={"field": "page_number", "op": "eq", "value": 3}
    )
    assert len(filtered) == 10 and all(keep[int(text.split()[1])] for text in filtered)
    expected = exact(vectors, queries[0], keep)
    if kind == "kd_tree":
        assert filtered == expected
    else:
        assert len(set(filtered) & set(expected)) >= 8


def test_leader_picks_a_seed_when_none_is_given(api: httpx.Client, library: Make) -> None:
    for kind in indexes.SEEDED:
        seed = library(index_type=kind)["index_params"]["seed"]
        assert isinstance(seed, int) and 0 <= seed < 2**31


def test_switch_index_in_place(api: httpx.Client, library: Make) -> None:
    lib = library(dimension=DIM)
    vectors = fill(api, lib["id"])
    query = vectors[17] + 0.01
    before = top(api, lib["id"], query)
    switched = api.patch(
        f"/libraries/{lib['id']}", json={"index_type": "hnsw", "index_params": {"M": 8, "seed": 5}}
    )
    assert switched.status_code == 200, switched.text
    body = switched.json()
    assert body["index_type"] == "hnsw" and body["index_params"]["M"] == 8
    assert body["index_params"]["seed"] == 5
    assert top(api, lib["id"], query, search_params={"ef": 400}) == before
    back = api.patch(f"/libraries/{lib['id']}", json={"index_type": "brute_force"})
    assert back.json()["index_params"] == {}
    assert top(api, lib["id"], query) == before


def test_bad_index_and_search_params(api: httpx.Client, library: Make) -> None:
    bad = api.post(
        "/libraries", json={"name": "bad-m", "index_type": "hnsw", "index_params": {"M": 1}}
    )
    assert bad.status_code == 422 and "M must be" in bad.json()["detail"]
    unknown = api.post(
        "/libraries", json={"name": "bad-p", "index_type": "hnsw", "index_params": {"colour": 1}}
    )
    assert unknown.status_code == 422 and "colour" in unknown.json()["detail"]
    lib = library(dimension=DIM, index_type="hnsw")
    fill(api, lib["id"], 100)
    response = api.post(
        f"/libraries/{lib['id']}/query",
        json={"query_embedding": [1.0] * DIM, "search_params": {"ef": -1}},
    )
    assert response.status_code == 422 and "search_params" in response.json()["detail"]
    flat = library(dimension=DIM)
    fill(api, flat["id"], 100)
    response = api.post(
        f"/libraries/{flat['id']}/query",
        json={"query_embedding": [1.0] * DIM, "search_params": {"ef": 5}},
    )
    assert response.status_code == 422 and "no parameters" in response.json()["detail"]
