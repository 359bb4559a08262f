"""The first queries after a node starts, for every index kind.

    python bench/first_query.py [--rows 2000] [--restarts 3]

Starts one node process on loopback, fills one library per index kind with
MiniLM vectors, and times the first three queries on each (the third with a
filter): once on the node that built them, then after each restart (the
index restored from a snapshot or the log). Also prints the seconds from
process start to ``/ready``. Kernels are compiled before ``/ready`` (see
``indexes/warmup.py``), so no query should pay for numba.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from indexes import KINDS  # noqa: E402
from tests.harness import NodeProcess  # noqa: E402

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "minilm-20k.npy"
FILTER = {"field": "page_number", "op": "gte", "value": 1}


def first_queries(node: NodeProcess, libraries: dict[str, str], query: list[float]) -> list[str]:
    cells = []
    with httpx.Client(base_url=node.url, timeout=60) as client:
        for kind in KINDS:
            times = []
            for filtered in (False, False, True):
                body: dict[str, object] = {"query_embedding": query, "k": 10}
                if filtered:
                    body["filters"] = FILTER
                started = time.perf_counter()
                response = client.post(f"/libraries/{libraries[kind]}/query", json=body)
                times.append((time.perf_counter() - started) * 1e3)
                response.raise_for_status()
            cells.append(" / ".join(f"{value:.1f}" for value in times))
    return cells


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--restarts", type=int, default=3)
    args = parser.parse_args()
    vectors = np.load(args.data).astype(np.float32)[: args.rows]
    query = vectors[7].tolist()
    rows: list[tuple[str, float, list[str]]] = []
    with tempfile.TemporaryDirectory() as tmp:
        node = NodeProcess(Path(tmp) / "node", "--log-level", "warning")
        started = time.perf_counter()
        node.start()
        ready = time.perf_counter() - started
        try:
            libraries: dict[str, str] = {}
            with httpx.Client(base_url=node.url, timeout=120) as client:
                for kind in KINDS:
                    body = {"name": kind, "index_type": kind, "dimension": vectors.shape[1]}
                    response = client.post("/libraries", json=body)
                    response.raise_for_status()
                    libraries[kind] = response.json()["id"]
                    for lo in range(0, len(vectors), 500):
                        chunks = [
                            {"embedding": vector.tolist(), "metadata": {"page_number": 1}}
                            for vector in vectors[lo : lo + 500]
                        ]
                        client.post(
                            f"/libraries/{libraries[kind]}/documents", json={"chunks": chunks}
                        ).raise_for_status()
            rows.append(("fresh node", ready, first_queries(node, libraries, query)))
            for restart in range(1, args.restarts + 1):
                node.stop()
                started = time.perf_counter()
                node.start()
                ready = time.perf_counter() - started
                rows.append((f"restart {restart}", ready, first_queries(node, libraries, query)))
        finally:
            node.stop()
    print(f"\n{platform.processor() or platform.machine()}, {os.cpu_count()} cores, load "
          f"{os.getloadavg()[0]:.2f}; {len(vectors)} x {vectors.shape[1]}-d MiniLM vectors "
          "per library; ms of the 1st / 2nd / 3rd (filtered) query over HTTP\n")  # fmt: skip
    print("| node | start to ready s | " + " | ".join(KINDS) + " |")
    print("|---|---|" + "---|" * len(KINDS))
    for name, seconds, cells in rows:
        print(f"| {name} | {seconds:.2f} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
