from __future__ import annotations

import numpy as np
import pytest

import indexes
from indexes import Metric, VectorStore


def naive_scores(metric: str, data: np.ndarray, query: np.ndarray) -> np.ndarray:
    data64, q = data.astype(np.float64), query.astype(np.float64)
    if metric == "cosine":
        return (data64 @ q) / (np.linalg.norm(data64, axis=1) * np.linalg.norm(q))
    if metric == "dot":
        return data64 @ q
    return -np.linalg.norm(data64 - q, axis=1)


@pytest.fixture
def data() -> np.ndarray:
    return np.random.default_rng(7).standard_normal((500, 24)).astype(np.float32)


@pytest.mark.parametrize("metric", ["cosine", "dot", "l2"])
def test_exact_top_k_matches_naive(metric: str, data: np.ndarray) -> None:
    index = indexes.create("brute_force", dim=24, metric=metric)
    index.add(np.arange(len(data)), data)
    queries = np.random.default_rng(8).standard_normal((20, 24)).astype(np.float32)
    batch_ids, batch_scores = index.search_batch(queries, 10)
    for n, query in enumerate(queries):
        expected = naive_scores(metric, data, query)
        order = np.argsort(-expected, kind="stable")[:10]
        ids, scores = index.search(query, 10)
        assert list(ids) == list(order)
        np.testing.assert_allclose(scores, expected[order], rtol=1e-4, atol=1e-4)
        assert list(batch_ids[n]) == list(ids)


def test_mask_and_removed_rows_are_never_returned(data: np.ndarray) -> None:
    index = indexes.create("brute_force", dim=24)
    index.add(np.arange(len(data)), data)
    index.remove(np.arange(0, 500, 2))
    mask = np.zeros(500, dtype=bool)
    mask[np.arange(0, 500, 3)] = True
    ids, _ = index.search(data[3], 50, mask)
    assert len(ids) == 50
    assert all(i % 2 == 1 and i % 3 == 0 for i in ids)
    # fewer matches than k: all of them, no padding
    tiny = np.zeros(500, dtype=bool)
    tiny[[1, 3, 5]] = True
    ids, scores = index.search(data[0], 10, tiny)
    assert sorted(ids) == [1, 3, 5] and np.isfinite(scores).all()


def test_short_mask_excludes_rows_beyond_it(data: np.ndarray) -> None:
    index = indexes.create("brute_force", dim=24, metric="dot")
    index.add(np.arange(len(data)), data)
    ids, _ = index.search(data[0], 500, np.ones(100, dtype=bool))
    assert len(ids) == 100 and ids.max() < 100


def test_store_is_shared_and_rows_overwrite() -> None:
    store = VectorStore(3)
    index = indexes.create("brute_force", dim=3, metric=Metric.DOT, store=store)
    index.add(np.array([0, 1]), np.array([[1, 0, 0], [0, 1, 0]], dtype=np.float32))
    index.add(np.array([0]), np.array([[0, 0, 5]], dtype=np.float32))
    assert store.live_count == 2
    ids, scores = index.search(np.array([0, 0, 1], dtype=np.float32), 1)
    assert ids[0] == 0 and scores[0] == pytest.approx(5.0)
    with pytest.raises(ValueError):
        indexes.create("brute_force", dim=4, store=store)


def test_empty_index_and_wrong_dimension() -> None:
    index = indexes.create("brute_force", dim=4)
    ids, scores = index.search(np.ones(4, dtype=np.float32), 5)
    assert len(ids) == 0 and len(scores) == 0
    with pytest.raises(ValueError):
        index.search(np.ones(3, dtype=np.float32), 5)


def test_unknown_kind_is_named() -> None:
    with pytest.raises(indexes.UnknownIndexKind, match="available"):
        indexes.create("annoy", dim=4)


def test_store_grows_and_keeps_rows() -> None:
    store = VectorStore(2, capacity=16)
    rows = np.arange(1000)
    vectors = np.random.default_rng(1).standard_normal((1000, 2)).astype(np.float32)
    store.put(rows, vectors)
    assert store.capacity >= 1000 and store.size == 1000
    np.testing.assert_array_equal(store.get(np.array([0, 999])), vectors[[0, 999]])
    store.delete(np.array([5, 5, 2000]))
    assert store.live_count == 999 and not store.is_live(5)
