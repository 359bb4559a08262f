"""Answers larger than --max-answer-bytes are refused before they are built,
with a sentence saying what to ask for instead; smaller asks still work."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

from tests.api.test_bad_input import problem
from tests.harness import NodeProcess

LIMIT = 1 << 20
DIM = 512
CHUNKS = 150


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    started = NodeProcess(tmp_path_factory.mktemp("answers") / "data", "--max-answer-bytes",
                          str(LIMIT)).start()  # fmt: skip
    yield started
    started.kill()


@pytest.fixture(scope="module")
def document(node: NodeProcess) -> tuple[str, str]:
    """One document of 150 chunks, each 2,000 characters and 512 numbers:
    about 2.2 MiB of answer with embeddings, 0.35 MiB without."""
    rng = np.random.default_rng(3)
    vectors = rng.standard_normal((CHUNKS, DIM)).astype(np.float32)
    with node.client() as api:
        library = api.post("/libraries", json={"name": "big", "dimension": DIM}).json()["id"]
        chunks = [{"text": f"{n:04d}" + "x" * 1996, "embedding": v.tolist()}
                  for n, v in enumerate(vectors)]  # fmt: skip
        made = api.post(f"/libraries/{library}/documents", json={"chunks": chunks})
        assert made.status_code == 201, made.text
        return library, made.json()["id"]




def test_a_query_for_too_much_is_refused_and_a_smaller_one_answers(
    node: NodeProcess, document: tuple[str, str]
) -> None:
    library, _ = document
    body = {"query_embedding": [1.0] * DIM, "k": 100, "include": ["text", "embedding"]}
    with node.client() as api:
        refused = api.post(f"/libraries/{library}/query", json=body)
        problem(refused, 422, "100 hits", "MiB", "--max-answer-bytes", "smaller k")
        body["include"] = ["text"]
        answered = api.post(f"/libraries/{library}/query", json=body)
        assert answered.status_code == 200, answered.text
        assert len(answered.json()["results"]) == 100
        assert len(answered.content) < LIMIT


def test_a_document_with_all_its_embeddings_is_refused_but_its_chunks_page(
    node: NodeProcess, document: tuple[str, str]
) -> None:
    library, document_id = document
    base = f"/libraries/{library}/documents/{document_id}"
    with node.client() as api:
        refused = api.get(base, params={"include_chunks": True, "include_embeddings": True})
        problem(refused, 422, f"{CHUNKS} chunks", "page through", f"{base}/chunks")
        whole = api.get(base, params={"include_chunks": True})
        assert whole.status_code == 200 and len(whole.json()["chunks"]) == CHUNKS
        page = api.get(f"{base}/chunks", params={"limit": CHUNKS, "include_embeddings": True})
        problem(page, 422, f"a page of {CHUNKS} chunks", "smaller limit")
        pages, cursor = 0, None
        while True:
            params: dict[str, object] = {"limit": 40, "include_embeddings": True}
            if cursor is not None:
                params["cursor"] = cursor
            answer = api.get(f"{base}/chunks", params=params)
            assert answer.status_code == 200, answer.text
            assert len(answer.content) < LIMIT
            pages += 1
            cursor = answer.json()["next_cursor"]
            if cursor is None:
                break
        assert pages == 4
