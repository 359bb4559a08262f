"""A write burst whose every outcome is recorded, and the checks after a crash."""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import httpx
import numpy as np

DIM = 8


@dataclass
class Attempt:
    """One add-document request: what was sent and what came back."""

    tag: str
    texts: list[str]
    vectors: list[list[float]]
    outcome: str = "unknown"  # ok | fail | unknown
    document_id: str | None = None
    chunk_ids: list[str] = field(default_factory=list)


def make_attempt(rng: random.Random, worker: int, n: int) -> Attempt:
    count = rng.randint(1, 25)
    tag = f"w{worker}-{n}"
    vectors = [[rng.uniform(-1, 1) for _ in range(DIM)] for _ in range(count)]
    return Attempt(tag, [f"{tag} chunk {c}" for c in range(count)], vectors)


def burst(
    url: str, library_id: str, workers: int, stop: threading.Event, seed: int = 0
) -> list[Attempt]:
    """Threads adding documents until ``stop`` is set; every attempt recorded."""
    attempts: list[Attempt] = []
    lock = threading.Lock()

    def work(worker: int) -> None:
        rng = random.Random(seed * 1000 + worker)
        with httpx.Client(base_url=url, timeout=10) as client:
            n = 0
            while not stop.is_set():
                attempt = make_attempt(rng, worker, n)
                n += 1
                with lock:
                    attempts.append(attempt)
                body = {
                    "metadata": {"title": attempt.tag, "tags": [f"n{len(attempt.texts)}"]},
                    "chunks": [
                        {"text": t, "embedding": v}
                        for t, v in zip(attempt.texts, attempt.vectors, strict=True)
                    ],
                }
                try:
                    response = client.post(f"/libraries/{library_id}/documents", json=body)
                except httpx.HTTPError:
                    return  # the node is gone: outcome unknown
                if response.status_code == 201:
                    attempt.outcome = "ok"
                    attempt.document_id = response.json()["id"]
                    attempt.chunk_ids = response.json()["chunk_ids"]
                else:
                    attempt.outcome = "fail"

    threads = [threading.Thread(target=work, args=(w,)) for w in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return attempts


def all_documents(client: httpx.Client, library_id: str) -> list[dict[str, Any]]:
    documents: list[dict[str, Any]] = []
    cursor = None
    for _ in range(10_000):
        params: dict[str, Any] = {"limit": 1000}
        if cursor:
            params["cursor"] = cursor
        page = client.get(f"/libraries/{library_id}/documents", params=params).json()
        documents += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            return documents
    raise AssertionError("pagination did not end")


def check_after_crash(client: httpx.Client, library_id: str, attempts: list[Attempt]) -> int:
    """No acknowledged write lost, no failed write present, nothing half-written.

    Returns how many documents are present.
    """
    present = {doc["metadata"]["title"]: doc for doc in all_documents(client, library_id)}
    by_tag = {attempt.tag: attempt for attempt in attempts}
    for attempt in attempts:
        if attempt.outcome == "ok":
            assert attempt.tag in present, f"acknowledged write {attempt.tag} was lost"
            assert present[attempt.tag]["id"] == attempt.document_id
        if attempt.outcome == "fail":
            assert attempt.tag not in present, f"failed write {attempt.tag} is present"
    for tag, doc in present.items():
        attempt = by_tag[tag]
        assert doc["chunk_count"] == len(attempt.texts), f"{tag} is half-written"
        full = client.get(
            f"/libraries/{library_id}/documents/{doc['id']}",
            params={"include_chunks": "true", "include_embeddings": "true"},
        ).json()
        assert [c["text"] for c in full["chunks"]] == attempt.texts
        got = np.asarray([c["embedding"] for c in full["chunks"]], dtype=np.float32)
        np.testing.assert_array_equal(got, np.asarray(attempt.vectors, dtype=np.float32))
    info = client.get(f"/libraries/{library_id}").json()
    assert info["document_count"] == len(present)
    assert info["chunk_count"] == sum(len(by_tag[t].texts) for t in present)
    return len(present)


def wait_for(predicate: Any, timeout: float, interval: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise TimeoutError("condition not met in time")
