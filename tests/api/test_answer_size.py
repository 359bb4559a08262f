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
        problem(refused, 422, f"with its chunks ({CHUNKS})", "page through", f"{base}/chunks")
        whole = api.get(base, params={"include_chunks": True})
        assert whole.status_code == 200 and len(whole.json()["chunks"]) == CHUNKS
        page = api.get(f"{base}/chunks", params={"limit": CHUNKS, "include_embeddings": True})
        assert page.status_code == 200, page.text  # cut short, not refused
        assert 0 < len(page.json()["items"]) < CHUNKS and page.json()["next_cursor"]
        assert len(page.content) < LIMIT
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


def test_escaped_text_counts_at_its_escaped_size(node: NodeProcess) -> None:
    """A control character takes six bytes in JSON: 300,000 of them are
    1.8 MB of answer, over the 1 MiB limit, though the text is 0.3 MB."""
    with node.client() as api:
        library = api.post("/libraries", json={"name": "escapes", "dimension": 2}).json()["id"]
        chunk = {"text": "\x01" * 300_000, "embedding": [1.0, 0.0]}
        made = api.post(f"/libraries/{library}/documents", json={"chunks": [chunk]})
        assert made.status_code == 201, made.text
        base = f"/libraries/{library}/documents/{made.json()['id']}"
        problem(api.get(base, params={"include_chunks": True}), 422, "with its chunks (1)")
        assert api.get(base).status_code == 200


def test_a_document_larger_than_the_limit_still_lists_and_answers(node: NodeProcess) -> None:
    """Found by review: a document whose chunk ids alone pass the limit was
    refused, and a listing stopped at its page for good. One item always
    answers; pages are cut short, never refused."""
    with node.client() as api:
        library = api.post("/libraries", json={"name": "many", "dimension": 2}).json()["id"]
        chunks = [{"text": "c", "embedding": [1.0, float(n)]} for n in range(10_000)]
        made = api.post(f"/libraries/{library}/documents", json={"chunks": chunks})
        assert made.status_code == 201, made.text
        document_id = made.json()["id"]
        for _ in range(2):  # 30,000 chunk ids: about 1.2 MB in the document's view
            more = api.post(f"/libraries/{library}/documents/{document_id}/chunks",
                            json={"chunks": chunks})  # fmt: skip
            assert more.status_code == 201, more.text
        small = api.post(f"/libraries/{library}/documents", json={"chunks": chunks[:1]})
        assert small.status_code == 201
        one = api.get(f"/libraries/{library}/documents/{document_id}")
        assert one.status_code == 200 and one.json()["chunk_count"] == 30_000
        seen, cursor = [], None
        for _ in range(5):
            params: dict[str, object] = {"limit": 100}
            if cursor is not None:
                params["cursor"] = cursor
            page = api.get(f"/libraries/{library}/documents", params=params)
            assert page.status_code == 200, page.text
            seen += [item["id"] for item in page.json()["items"]]
            cursor = page.json()["next_cursor"]
            if cursor is None:
                break
        assert seen == [document_id, small.json()["id"]]
