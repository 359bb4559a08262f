"""The SDK against raw HTTP: ingest and queries on one node, alternating rounds.

    python bench/sdk_overhead.py [--rounds 3] [--rows 20000]

Starts one node process on loopback (brute force library, so the server's
work per document is small and the client's share shows), then per round
runs each way of sending the same documents of 100 chunks in turn:

- ``raw bytes``: httpx posting bodies encoded before the clock starts (the
  floor: the network and the server only);
- ``raw json=``: httpx with ``json=`` (what a user without the SDK writes);
- ``sdk lists``: ``Client.add_document`` with embeddings as lists;
- ``sdk numpy``: the same with numpy arrays;
- ``sdk upsert``: ``Client.upsert_documents`` (one at a time, with its key).

and then 1,000 queries through httpx and through the SDK. Prints the median
seconds of each and the ratio to raw ``json=`` and to the floor, and the
client-side split of one document: encoding and response validation.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "sdk"))

from shoal_client import Client  # noqa: E402
from shoal_client._calls import upsert_key  # noqa: E402
from shoal_client._models import Document  # noqa: E402
from shoal_client._wire import encode  # noqa: E402

from tests.harness import NodeProcess  # noqa: E402

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "minilm-20k.npy"
DOC_CHUNKS = 100
QUERIES = 1000


def chunks_of(batch: np.ndarray, as_lists: bool) -> list[dict[str, Any]]:
    return [
        {
            "text": f"chunk {c}",
            "embedding": vector.tolist() if as_lists else vector,
            "metadata": {"page_number": c},
        }
        for c, vector in enumerate(batch)
    ]


def timed(work: Callable[[], None]) -> float:
    started = time.perf_counter()
    work()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--rows", type=int, default=20_000)
    args = parser.parse_args()
    vectors = np.load(args.data).astype(np.float32)[: args.rows]
    batches = [vectors[i : i + DOC_CHUNKS] for i in range(0, len(vectors), DOC_CHUNKS)]
    queries = vectors[:QUERIES]

    with tempfile.TemporaryDirectory() as tmp:
        node = NodeProcess(Path(tmp) / "node", "--log-level", "warning").start()
        raw = httpx.Client(base_url=node.url, timeout=120)
        sdk = Client(node.url, timeout=120)
        try:
            times: dict[str, list[float]] = {}

            def library() -> str:
                body = {"name": f"bench-{time.time_ns()}", "dimension": 384}
                response = raw.post("/libraries", json=body)
                response.raise_for_status()
                return str(response.json()["id"])

            def drop(library_id: str) -> None:
                raw.delete(f"/libraries/{library_id}").raise_for_status()

            def raw_bytes(library_id: str) -> None:
                bodies = [
                    json.dumps({"chunks": chunks_of(batch, True)}).encode() for batch in batches
                ]
                headers = {"content-type": "application/json"}

                def send() -> None:
                    for body in bodies:
                        url = f"/libraries/{library_id}/documents"
                        raw.post(url, content=body, headers=headers).raise_for_status()

                times.setdefault("ingest: raw bytes", []).append(timed(send))

            def raw_json(library_id: str) -> None:
                def send() -> None:
                    for batch in batches:
                        body = {"chunks": chunks_of(batch, True)}
                        raw.post(f"/libraries/{library_id}/documents", json=body).raise_for_status()

                times.setdefault("ingest: raw json=", []).append(timed(send))

            def sdk_lists(library_id: str) -> None:
                def send() -> None:
                    for batch in batches:
                        sdk.add_document(library_id, chunks=chunks_of(batch, True))

                times.setdefault("ingest: sdk lists", []).append(timed(send))

            def sdk_numpy(library_id: str) -> None:
                def send() -> None:
                    for batch in batches:
                        sdk.add_document(library_id, chunks=chunks_of(batch, False))

                times.setdefault("ingest: sdk numpy", []).append(timed(send))

            def sdk_upsert(library_id: str) -> None:
                documents = [{"chunks": chunks_of(batch, False)} for batch in batches]
                times.setdefault("ingest: sdk upsert", []).append(
                    timed(lambda: sdk.upsert_documents(library_id, documents, concurrency=1))
                )

            def query_raw(library_id: str) -> None:
                def send() -> None:
                    for vector in queries:
                        body = {"query_embedding": vector.tolist(), "k": 10}
                        raw.post(f"/libraries/{library_id}/query", json=body).raise_for_status()

                times.setdefault("queries: raw json=", []).append(timed(send))

            def query_sdk(library_id: str) -> None:
                def send() -> None:
                    for vector in queries:
                        sdk.query(library_id, query_embedding=vector, k=10)

                times.setdefault("queries: sdk", []).append(timed(send))

            ingests = [raw_bytes, raw_json, sdk_lists, sdk_numpy, sdk_upsert]
            load = os.getloadavg()[0]
            for round_ in range(args.rounds):
                order = ingests if round_ % 2 == 0 else ingests[::-1]
                for ingest in order:
                    library_id = library()
                    ingest(library_id)
                    if ingest is sdk_upsert:
                        pair = [query_raw, query_sdk] if round_ % 2 == 0 else [query_sdk, query_raw]
                        for measure in pair:
                            measure(library_id)
                    drop(library_id)
            split = client_split(batches[0], raw, library())
        finally:
            sdk.close()
            raw.close()
            node.stop()

    print(f"\n{platform.processor() or platform.machine()}, {os.cpu_count()} cores, load "
          f"{load:.2f} at start; {len(vectors)} x 384-d MiniLM vectors in documents of "
          f"{DOC_CHUNKS}; brute force; {args.rounds} rounds, order alternating\n")  # fmt: skip
    print("| work | median s | ÷ raw json= | ÷ raw bytes |")
    print("|---|---|---|---|")
    for group in ("ingest", "queries"):
        floor = statistics.median(times.get(f"{group}: raw bytes", times[f"{group}: raw json="]))
        reference = statistics.median(times[f"{group}: raw json="])
        for name, values in times.items():
            if name.startswith(group):
                median = statistics.median(values)
                print(f"| {name} | {median:.2f} | {median / reference:.2f}× | "
                      f"{median / floor:.2f}× |")  # fmt: skip
    print("\nClient CPU for one document of 100 chunks (ms):\n")
    print("| step | ms |")
    print("|---|---|")
    for name, value in split.items():
        print(f"| {name} | {value:.2f} |")


def client_split(batch: np.ndarray, raw: httpx.Client, library_id: str) -> dict[str, float]:
    """Per-document client work, each step repeated and timed on its own."""
    lists = {"chunks": chunks_of(batch, True)}
    arrays = {"chunks": chunks_of(batch, False)}
    response = raw.post(f"/libraries/{library_id}/documents", json=lists)
    response.raise_for_status()
    reply = response.content

    def each(work: Callable[[], object], repeat: int = 30) -> float:
        started = time.perf_counter()
        for _ in range(repeat):
            work()
        return (time.perf_counter() - started) / repeat * 1e3

    return {
        "numpy rows to lists (tolist)": each(lambda: [vector.tolist() for vector in batch]),
        "encode lists, json.dumps (httpx json=)": each(lambda: json.dumps(lists).encode()),
        "encode lists, SDK (orjson)": each(lambda: encode(lists)),
        "encode numpy, SDK (orjson)": each(lambda: encode(arrays)),
        "upsert key (sorted encode + sha256)": each(lambda: upsert_key(library_id, arrays)),
        "validate the reply (pydantic Document)": each(
            lambda: Document.model_validate(json.loads(reply))
        ),
    }


if __name__ == "__main__":
    main()
