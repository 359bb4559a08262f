"""Embedding providers: Cohere through the real SDK against a local server."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from node.embeddings import (
    CohereEmbedder,
    LocalHashEmbedder,
    ProviderFailed,
    build_registry,
    minilm,
)
from tests.fake_cohere import DIMENSION, FakeCohere

_opened: list[CohereEmbedder] = []


def request_close(embedder: CohereEmbedder) -> None:
    _opened.append(embedder)


@pytest.fixture(autouse=True)
def close_embedders() -> Iterator[None]:
    yield
    while _opened:
        _opened.pop().close()


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeCohere]:
    server = FakeCohere().start()
    yield server
    server.stop()


def test_batches_of_96_with_input_types(fake: FakeCohere) -> None:
    fake.requests.clear()
    embedder = CohereEmbedder("key", base_url=fake.url, max_retries=0)
    request_close(embedder)
    texts = [f"passage number {n}" for n in range(200)]
    vectors = embedder.embed(texts, None, "search_document")
    assert vectors.shape == (200, DIMENSION) and vectors.dtype == np.float32
    calls = fake.calls("embed")
    assert [len(call["texts"]) for call in calls] == [96, 96, 8]
    assert all(call["input_type"] == "search_document" for call in calls)
    assert all(call["model"] == "embed-english-v3.0" for call in calls)
    embedder.embed(["what is passage 3"], None, "search_query")
    assert fake.calls("embed")[-1]["input_type"] == "search_query"


def test_cache_saves_repeat_calls(fake: FakeCohere) -> None:
    fake.requests.clear()
    embedder = CohereEmbedder("key", base_url=fake.url, max_retries=0, cache_entries=50)
    request_close(embedder)
    first = embedder.embed(["alpha", "beta"], None, "search_query")
    again = embedder.embed(["beta", "alpha", "gamma"], None, "search_query")
    assert len(fake.calls("embed")) == 2 and fake.calls("embed")[1]["texts"] == ["gamma"]
    np.testing.assert_array_equal(first[0], again[1])
    # the same text embedded for storage is a different request
    embedder.embed(["alpha"], None, "search_document")
    assert len(fake.calls("embed")) == 3


def test_429_then_success_is_retried_by_the_sdk(fake: FakeCohere) -> None:
    fake.requests.clear()
    fake.fail_next["embed"] = [429, 503]
    embedder = CohereEmbedder("key", base_url=fake.url, max_retries=3)
    request_close(embedder)
    vectors = embedder.embed(["retry me"], None, "search_document")
    assert vectors.shape == (1, DIMENSION)
    assert len(fake.calls("embed")) == 3  # 429, 503, then the answer


def test_persistent_failure_is_reported(fake: FakeCohere) -> None:
    fake.fail_next["embed"] = [500, 500, 500]
    embedder = CohereEmbedder("key", base_url=fake.url, max_retries=1)
    request_close(embedder)
    with pytest.raises(ProviderFailed, match="500"):
        embedder.embed(["doomed"], None, "search_document")
    fake.fail_next.clear()


def test_registry_defaults_to_cohere_with_a_key(fake: FakeCohere) -> None:
    assert build_registry().default == LocalHashEmbedder.model
    keyed = build_registry("key", cohere_base_url=fake.url)
    assert keyed.default == "embed-english-v3.0"
    assert "local-hash-v1" in keyed.models
    keyed.close()


@pytest.mark.skipif(not minilm.available(), reason="the minilm extra is not installed")
def test_minilm_gives_real_sentence_embeddings() -> None:
    embedder = minilm.MiniLMEmbedder()
    vectors = embedder.embed(
        ["a cat sits on the mat", "a kitten rests on a rug", "quarterly tax filings are due"],
        None,
        "search_document",
    )
    assert vectors.shape == (3, 384)
    assert vectors[0] @ vectors[1] > vectors[0] @ vectors[2] + 0.2


SHARED = Path(__file__).resolve().parents[3] / "shared" / "data"


@pytest.mark.skipif(
    not minilm.available() or not (SHARED / "minilm-20k.npy").exists(),
    reason="needs the minilm extra and the shared MiniLM vectors",
)
def test_minilm_reproduces_the_reference_vectors() -> None:
    """Each of 50 passages finds its own reference vector nearest among 2,000
    (most match to 1e-6; a few stored texts differ slightly from what was
    embedded)."""
    lines = (SHARED / "minilm-20k.jsonl").read_text().splitlines()[:2000]
    texts = [json.loads(line)["text"] for line in lines[:50]]
    reference = np.load(SHARED / "minilm-20k.npy")[:2000].astype(np.float32)
    reference /= np.linalg.norm(reference, axis=1, keepdims=True)
    vectors = minilm.MiniLMEmbedder().embed(texts, None, "search_document")
    assert np.array_equal((vectors @ reference.T).argmax(axis=1), np.arange(50))
    assert np.median(np.einsum("ij,ij->i", vectors, reference[:50])) > 0.9999
