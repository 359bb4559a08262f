"""Many threads reading and writing one library at once, against a real node.

Every chunk's vector is a pure function of its text, so each query hit can be
checked on its own: its score must be the cosine between the query and the
vector its text implies, and its metadata must match its text. A data race
that mixes up rows, vectors or records shows up as a mismatch.
"""

from __future__ import annotations

import hashlib
import random
import threading
import time
from collections.abc import Callable
from typing import Any

import httpx
import numpy as np
import pytest

from tests.harness import NodeProcess

DIM = 12
SECONDS = 6.0


def vector_for(text: str) -> list[float]:
    seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")
    return np.random.default_rng(seed).uniform(-1, 1, DIM).astype(np.float32).tolist()


def chunk(tag: str, c: int, version: int = 0) -> dict[str, Any]:
    text = f"{tag}|{c}|{version}"
    return {"text": text, "embedding": vector_for(text), "metadata": {"page_number": c}}


def cosine(a: list[float], b: list[float]) -> float:
    x, y = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(x @ y / (np.linalg.norm(x) * np.linalg.norm(y)))


def test_parallel_reads_and_writes_stay_consistent(
    start_node: Callable[..., NodeProcess],
) -> None:
    node = start_node("--fsync", "batch")
    with node.client() as client:
        library_id = client.post("/libraries", json={"name": "hammer", "dimension": DIM}).json()[
            "id"
        ]
    base = f"/libraries/{library_id}"
    deadline = time.monotonic() + SECONDS
    errors: list[str] = []
    counts = {"queries": 0, "writes": 0, "hits": 0}
    lock = threading.Lock()

    def record(message: str) -> None:
        with lock:
            errors.append(message)

    def writer(worker: int) -> None:
        rng = random.Random(worker)
        mine: list[tuple[str, list[str]]] = []
        with httpx.Client(base_url=node.url, timeout=30) as api:
            n = 0
            while time.monotonic() < deadline:
                roll = rng.random()
                if roll < 0.55 or not mine:
                    tag = f"w{worker}d{n}"
                    n += 1
                    body = {
                        "metadata": {"title": tag, "tags": [f"w{worker}"]},
                        "chunks": [chunk(tag, c) for c in range(rng.randint(1, 8))],
                    }
                    response = api.post(f"{base}/documents", json=body)
                    if response.status_code != 201:
                        record(f"add: {response.status_code} {response.text}")
                        continue
                    mine.append((response.json()["id"], response.json()["chunk_ids"]))
                elif roll < 0.8:
                    doc_id, _ = mine.pop(rng.randrange(len(mine)))
                    response = api.delete(f"{base}/documents/{doc_id}")
                    if response.status_code != 204:
                        record(f"delete: {response.status_code} {response.text}")
                else:
                    doc_id, chunk_ids = rng.choice(mine)
                    position = rng.randrange(len(chunk_ids))
                    got = api.get(f"{base}/chunks/{chunk_ids[position]}").json()
                    tag, c, version = got["text"].split("|")
                    update = chunk(tag, int(c), int(version) + 1)
                    del update["metadata"]
                    response = api.patch(f"{base}/chunks/{chunk_ids[position]}", json=update)
                    if response.status_code != 200:
                        record(f"update: {response.status_code} {response.text}")
                with lock:
                    counts["writes"] += 1

    def reader(worker: int) -> None:
        rng = random.Random(100 + worker)
        with httpx.Client(base_url=node.url, timeout=30) as api:
            while time.monotonic() < deadline:
                query = rng.choice(
                    [
                        None,
                        {"field": "page_number", "op": "lte", "value": 3},
                        {"field": "tags", "op": "contains_any", "value": ["w1"]},
                    ]
                )
                q = np.random.default_rng(rng.getrandbits(32)).uniform(-1, 1, DIM).tolist()
                body: dict[str, Any] = {
                    "query_embedding": q,
                    "k": 10,
                    "include": ["text", "metadata", "document"],
                }
                if query:
                    body["filters"] = query
                response = api.post(f"{base}/query", json=body)
                if response.status_code != 200:
                    record(f"query: {response.status_code} {response.text}")
                    continue
                hits = response.json()["results"]
                scores = [hit["score"] for hit in hits]
                if scores != sorted(scores, reverse=True):
                    record(f"unsorted scores {scores}")
                for hit in hits:
                    tag, c, _ = hit["text"].split("|")
                    if abs(hit["score"] - cosine(q, vector_for(hit["text"]))) > 1e-4:
                        record(f"score of {hit['text']} does not match its vector")
                    if hit["metadata"]["page_number"] != int(c):
                        record(f"metadata of {hit['text']} belongs to another chunk")
                    if hit["document"]["metadata"]["title"] != tag:
                        record(f"{hit['text']} reported under document {hit['document']}")
                    if query and query["field"] == "page_number" and int(c) > 3:
                        record(f"filter let through {hit['text']}")
                    if query and query["field"] == "tags" and not tag.startswith("w1d"):
                        record(f"tag filter let through {hit['text']}")
                with lock:
                    counts["queries"] += 1
                    counts["hits"] += len(hits)

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(4)]
    threads += [threading.Thread(target=reader, args=(r,)) for r in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(SECONDS + 60)
    assert not errors, errors[:10]
    assert counts["queries"] > 50 and counts["writes"] > 50 and counts["hits"] > 100, counts

    with node.client() as api:
        info = api.get(base).json()
        docs = api.get(f"{base}/documents", params={"limit": 1000}).json()["items"]
        assert info["document_count"] == len(docs)
        assert info["chunk_count"] == sum(doc["chunk_count"] for doc in docs)


@pytest.mark.parametrize("threads", [8])
def test_rwlock_excludes_writers_from_readers(threads: int) -> None:
    from node.store.rwlock import RWLock

    lock = RWLock()
    state = {"readers": 0, "writer": False, "bad": 0, "reads": 0, "writes": 0}
    guard = threading.Lock()
    stop = time.monotonic() + 1.0

    def read() -> None:
        while time.monotonic() < stop:
            with lock.read():
                with guard:
                    state["readers"] += 1
                    state["bad"] += state["writer"]
                    state["reads"] += 1
                time.sleep(0.0005)
                with guard:
                    state["readers"] -= 1

    def write() -> None:
        while time.monotonic() < stop:
            with lock.write():
                with guard:
                    state["bad"] += state["writer"] or state["readers"] > 0
                    state["writer"] = True
                    state["writes"] += 1
                time.sleep(0.0005)
                with guard:
                    state["writer"] = False

    workers = [threading.Thread(target=read) for _ in range(threads)]
    workers += [threading.Thread(target=write) for _ in range(2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(10)
    assert state["bad"] == 0
    assert state["writes"] > 20 and state["reads"] > 20  # writers were not starved
