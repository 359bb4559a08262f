"""Index and search parameters follow one strict rule: the index's own.

The request is checked by building the index, and every replica builds it
again when the entry applies, so a value the constructor lets through must
never fail later (issue 11, poison entries).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import indexes
from node.errors import InvalidRequest
from node.service import Service

BAD_BUILD: list[tuple[str, dict[str, Any], str]] = [
    ("hnsw", {"ef_construction": 200.5}, "ef_construction must be an integer"),
    ("hnsw", {"ef_construction": 200.0}, "ef_construction must be an integer"),
    ("hnsw", {"M": True}, "M must be an integer"),
    ("hnsw", {"M": 16.5}, "M must be an integer"),
    ("hnsw", {"ef_search": "64"}, "ef_search must be an integer"),
    ("hnsw", {"ef_search": None}, "ef_search must be an integer"),
    ("hnsw", {"seed": 1.5}, "seed must be an integer"),
    ("hnsw", {"seed": True}, "seed must be an integer"),
    ("hnsw", {"seed": -1}, "seed must be an integer"),
    ("hnsw", {"repair_threshold": float("nan")}, "repair_threshold must be a number"),
    ("hnsw", {"repair_threshold": True}, "repair_threshold must be a number"),
    ("hnsw", {"exact_below": "0.1"}, "exact_below must be a number"),
    ("hnsw", {"colour": 1}, "colour"),
    ("kd_tree", {"leaf_size": 32.5}, "leaf_size must be an integer"),
    ("kd_tree", {"leaf_size": False}, "leaf_size must be an integer"),
    ("kd_tree", {"leaf_size": [32]}, "leaf_size must be an integer"),
    ("lsh", {"tables": 12.0}, "tables must be an integer"),
    ("lsh", {"bits": 8.5}, "bits must be an integer"),
    ("lsh", {"probes": True}, "probes must be an integer"),
    ("lsh", {"seed": "7"}, "seed must be an integer"),
    ("lsh", {"seed": 2**63}, "seed must be an integer"),
    ("brute_force", {"seed": 1}, "no parameters"),
]


@pytest.mark.parametrize(("kind", "params", "sentence"), BAD_BUILD)
def test_constructors_refuse_what_they_cannot_use(
    kind: str, params: dict[str, Any], sentence: str
) -> None:
    with pytest.raises(ValueError, match=sentence):
        indexes.create(kind, dim=4, **params)


@pytest.mark.parametrize(("kind", "params", "sentence"), BAD_BUILD)
def test_the_request_is_refused_with_the_same_sentence(
    kind: str, params: dict[str, Any], sentence: str
) -> None:
    with pytest.raises(InvalidRequest, match=sentence) as caught:
        Service._index_params(kind, params, "cosine", 4)
    assert caught.value.status == 422
    assert caught.value.detail.startswith(f"index_params for {kind}: ")


def test_good_values_are_kept_as_plain_numbers() -> None:
    hnsw = indexes.create(
        "hnsw", dim=4, M=np.int64(8), ef_construction=100, repair_threshold=1, seed=3
    )
    assert type(hnsw.m) is int and hnsw.m == 8
    assert type(hnsw.repair_threshold) is float
    lsh = indexes.create("lsh", dim=4, bits=None, probes=0, seed=0)
    assert lsh.fixed_bits is None and lsh.probes == 0


def loaded(kind: str) -> Any:
    params = {"seed": 1} if kind in indexes.SEEDED else {}
    index = indexes.create(kind, dim=4, **params)
    rows = np.arange(20, dtype=np.int64)
    index.add(rows, np.random.default_rng(0).normal(size=(20, 4)).astype(np.float32))
    return index


BAD_SEARCH: list[tuple[str, dict[str, Any], str]] = [
    ("hnsw", {"ef": 1.5}, "ef must be an integer"),
    ("hnsw", {"ef": 64.0}, "ef must be an integer"),
    ("hnsw", {"ef": True}, "ef must be an integer"),
    ("hnsw", {"ef": "8"}, "ef must be an integer"),
    ("hnsw", {"ef": float("inf")}, "ef must be an integer"),
    ("hnsw", {"ef": 0}, "ef must be an integer"),
    ("hnsw", {"probes": 3}, "takes only ef"),
    ("hnsw", {"ef": 8, "probes": 3}, "takes only ef"),
    ("hnsw", {"ef": 10_001}, "ef must be an integer"),
    ("lsh", {"probes": 2.0}, "probes must be an integer"),
    ("lsh", {"probes": None}, "probes must be an integer"),
    ("lsh", {"probes": float("nan")}, "probes must be an integer"),
    ("lsh", {"ef": 3}, "takes only probes"),
    ("kd_tree", {"ef": 3}, "no parameters"),
    ("brute_force", {"probes": 3}, "no parameters"),
]


@pytest.mark.parametrize(("kind", "params", "sentence"), BAD_SEARCH)
def test_search_params_are_strict(kind: str, params: dict[str, Any], sentence: str) -> None:
    index = loaded(kind)
    query = np.ones(4, dtype=np.float32)
    with pytest.raises(indexes.InvalidParameter, match=sentence):
        indexes.check_search_params(kind, params)
    with pytest.raises(indexes.InvalidParameter, match=sentence):
        index.search(query, 3, None, **params)


def test_good_search_params_pass() -> None:
    query = np.ones(4, dtype=np.float32)
    for kind, params in (("hnsw", {"ef": 8}), ("lsh", {"probes": 0}), ("kd_tree", {})):
        indexes.check_search_params(kind, params)
        ids, _ = loaded(kind).search(query, 3, None, **params)
        assert len(ids) == 3
