"""Queries per second on one node with 1 and with 4 clients.

    python bench/query_clients.py [--rows 5000] [--index hnsw] [--rounds 2] [--seconds 4]

Starts one node process on loopback, fills one library with MiniLM vectors,
then alternates 1 and 4 clients of `bench/loadgen.py` sending k=10 queries
with held-out vectors. Prints each pass and the median ratio 4 ÷ 1 (issue
#12 asks for at least 1.8x on 2 cores; the client shares those cores).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.loadgen import drive  # noqa: E402
from tests.harness import NodeProcess  # noqa: E402

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "minilm-20k.npy"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--rows", type=int, default=5000)
    parser.add_argument("--index", default="hnsw")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=4.0)
    args = parser.parse_args()
    vectors = np.load(args.data).astype(np.float32)
    queries = vectors[-500:].tolist()
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as scratch:
        node = NodeProcess(Path(scratch) / "data").start()
        try:
            with node.client() as api:
                created = api.post("/libraries", json={"name": "q", "index_type": args.index})
                library = created.json()["id"]
                for start in range(0, args.rows, 500):
                    rows = vectors[start : min(start + 500, args.rows)]
                    chunks = [{"text": f"r{start + n}", "embedding": row.tolist()}
                              for n, row in enumerate(rows)]  # fmt: skip
                    answer = api.post(f"/libraries/{library}/documents", json={"chunks": chunks})
                    answer.raise_for_status()

            def request(n: int) -> tuple[str, str, object]:
                body = {"query_embedding": queries[n % len(queries)], "k": 10}
                return "POST", f"/libraries/{library}/query", body

            rates: dict[int, list[float]] = {1: [], 4: []}
            for round_ in range(args.rounds):
                for clients in (1, 4):
                    result = drive(node.url, request, clients, args.seconds)
                    rates[clients].append(result.rate)
                    print(f"round {round_ + 1}, {clients} client(s): {result.rate:.0f} q/s, "
                          f"p50 {result.p50_ms:.2f} ms", flush=True)  # fmt: skip
        finally:
            node.stop()
    ratio = statistics.median(four / one for one, four in zip(rates[1], rates[4], strict=True))
    print(f"\n{platform.machine()}, {os.cpu_count()} cores, load {load:.2f} at start; "
          f"{args.rows} x {vectors.shape[1]}-d, {args.index}, k=10")
    print("\n| 1 client q/s | 4 clients q/s | 4 ÷ 1 (median of rounds) |\n|---|---|---|")
    print(f"| {statistics.median(rates[1]):.0f} | {statistics.median(rates[4]):.0f} "
          f"| {ratio:.2f}x |")


if __name__ == "__main__":
    main()
