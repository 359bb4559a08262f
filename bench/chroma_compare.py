"""One node of Shoal against Chroma: ingest, queries at equal recall, restart.

    python bench/chroma_compare.py [--rows 20000] [--rounds 3]

Both run as a server process on loopback and are driven by the same client
over HTTP/JSON (Chroma through its v2 REST API). Rounds alternate between
the two so the machine's noise falls on both. Each round, for each system,
on a fresh data directory:

- ingest the MiniLM vectors (384-d, unit length) in batches of 100, once
  with 1 client and once with 4 (vectors/s);
- queries (k=10) from held-out vectors with 1 and 4 clients: queries/s and
  recall@10 against exact search (HNSW on both, M=16, ef_construction=100,
  ef_search=100);
- kill -9 the server, start it again on the same data: seconds until a
  query answers with every vector present, and resident memory before the
  kill and after the restart.

Prints per-round numbers and the median of per-round ratios (Shoal ÷ Chroma
for rates; Chroma ÷ Shoal for restart time, so higher is better for Shoal
throughout). Chroma comes from PyPI (chromadb 1.5.9), installed by the
benchmark into its own virtualenv (bench/.venv-chroma), never into Shoal's.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.harness import NodeProcess, free_port  # noqa: E402

HERE = Path(__file__).resolve().parent
DATA = HERE.parents[1] / "shared" / "data" / "minilm-20k.npy"
CHROMA_VERSION = "1.5.9"
CHROMA_VENV = HERE / ".venv-chroma"
BATCH = 100
QUERIES = 300
HNSW = {"M": 16, "ef_construction": 100}
EF_SEARCH = 100


def ensure_chroma() -> Path:
    binary = CHROMA_VENV / "bin" / "chroma"
    if not binary.exists():
        subprocess.run([sys.executable, "-m", "venv", str(CHROMA_VENV)], check=True)
        subprocess.run([str(CHROMA_VENV / "bin" / "pip"), "install", "-q",
                        f"chromadb=={CHROMA_VERSION}"], check=True)  # fmt: skip
    return binary


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class System:
    """What the rounds need from either server."""

    name = ""
    pid = 0
    url = ""

    def start(self) -> float: ...  # seconds until it answers a query with all rows
    def kill(self) -> None: ...
    def stop(self) -> None: ...
    def create(self) -> str: ...  # a fresh collection or library; its id
    def add_body(self, target: str, start: int, vectors: np.ndarray) -> tuple[str, bytes]: ...
    def query_body(self, target: str, vector: np.ndarray) -> tuple[str, bytes]: ...
    def ids_of(self, answer: dict[str, Any]) -> list[int]: ...
    def count(self, target: str) -> int: ...


class Chroma(System):
    name = "Chroma"

    def __init__(self, binary: Path, data: Path) -> None:
        self.binary, self.data = binary, data
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.base = "/api/v2/tenants/default_tenant/databases/default_database/collections"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> float:
        started = time.perf_counter()
        log = open(self.data.with_suffix(".log"), "ab")  # noqa: SIM115 - lives with the process
        self.process = subprocess.Popen(
            [str(self.binary), "run", "--path", str(self.data), "--port", str(self.port)],
            stdout=log, stderr=log,
        )  # fmt: skip
        self.pid = self.process.pid
        _wait_until(lambda: httpx.get(self.url + "/api/v2/heartbeat", timeout=1).status_code == 200)
        return time.perf_counter() - started

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(30)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()

    def create(self) -> str:
        name = f"bench-{time.monotonic_ns()}"
        hnsw = {"space": "cosine", "max_neighbors": HNSW["M"],
                "ef_construction": HNSW["ef_construction"], "ef_search": EF_SEARCH}  # fmt: skip
        config = {"hnsw": hnsw}
        created = httpx.post(self.url + self.base, json={"name": name, "configuration": config})
        created.raise_for_status()
        return str(created.json()["id"])

    def add_body(self, target: str, start: int, vectors: np.ndarray) -> tuple[str, bytes]:
        ids = [str(start + n) for n in range(len(vectors))]
        body = {"ids": ids, "embeddings": vectors.tolist(), "documents": [f"p{i}" for i in ids]}
        return f"{self.base}/{target}/add", json.dumps(body).encode()

    def query_body(self, target: str, vector: np.ndarray) -> tuple[str, bytes]:
        body = {"query_embeddings": [vector.tolist()], "n_results": 10, "include": ["distances"]}
        return f"{self.base}/{target}/query", json.dumps(body).encode()

    def ids_of(self, answer: dict[str, Any]) -> list[int]:
        return [int(i) for i in answer["ids"][0]]

    def count(self, target: str) -> int:
        return int(httpx.get(f"{self.url}{self.base}/{target}/count", timeout=30).json())


class Shoal(System):
    name = "Shoal"

    def __init__(self, data: Path) -> None:
        self.node = NodeProcess(data, "--log-level", "warning")
        self.url = ""

    def start(self) -> float:
        started = time.perf_counter()
        self.node.start(wait=False)
        self.url, self.pid = self.node.url, self.node.pid
        self.node.wait_ready(timeout=600)
        return time.perf_counter() - started

    def kill(self) -> None:
        self.node.kill()

    def stop(self) -> None:
        self.node.stop()

    def create(self) -> str:
        body = {"name": f"bench-{time.monotonic_ns()}", "dimension": 384, "metric": "cosine",
                "index_type": "hnsw", "index_params": HNSW}  # fmt: skip
        created = httpx.post(self.url + "/libraries", json=body, timeout=30)
        created.raise_for_status()
        return str(created.json()["id"])

    def add_body(self, target: str, start: int, vectors: np.ndarray) -> tuple[str, bytes]:
        chunks = [{"text": f"p{start + n}", "embedding": v.tolist()} for n, v in enumerate(vectors)]
        return f"/libraries/{target}/documents", json.dumps({"chunks": chunks}).encode()

    def query_body(self, target: str, vector: np.ndarray) -> tuple[str, bytes]:
        body = {"query_embedding": vector.tolist(), "k": 10, "search_params": {"ef": EF_SEARCH}}
        return f"/libraries/{target}/query", json.dumps(body).encode()

    def ids_of(self, answer: dict[str, Any]) -> list[int]:
        return [int(hit["text"][1:]) for hit in answer["results"]]

    def count(self, target: str) -> int:
        return int(httpx.get(f"{self.url}/libraries/{target}", timeout=30).json()["chunk_count"])


def _wait_until(ready: Callable[[], bool], timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if ready():
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.02)
    raise TimeoutError("the server did not come up")


def post_all(url: str, requests: list[tuple[str, bytes]], clients: int) -> float:
    """Send every request from ``clients`` threads; the seconds it took."""
    cursor = iter(requests)
    lock = threading.Lock()
    failures: list[str] = []

    def work() -> None:
        with httpx.Client(base_url=url, timeout=300) as client:
            while True:
                with lock:
                    item = next(cursor, None)
                if item is None:
                    return
                response = client.post(item[0], content=item[1],
                                       headers={"content-type": "application/json"})  # fmt: skip
                if response.status_code >= 300:
                    failures.append(response.text[:300])

    started = time.perf_counter()
    threads = [threading.Thread(target=work) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failures:
        raise RuntimeError(failures[0])
    return time.perf_counter() - started


async def _query_rate(
    system: System, bodies: list[tuple[str, bytes]], clients: int, seconds: float
) -> tuple[float, list[dict[str, Any]]]:
    answers: list[dict[str, Any]] = [{} for _ in bodies]
    done = 0
    stop = time.monotonic() + seconds
    limits = httpx.Limits(max_connections=clients)

    async def loop(worker: int, client: httpx.AsyncClient) -> None:
        nonlocal done
        n = worker
        while time.monotonic() < stop:
            path, body = bodies[n % len(bodies)]
            response = await client.post(path, content=body,
                                         headers={"content-type": "application/json"})  # fmt: skip
            response.raise_for_status()
            answers[n % len(bodies)] = response.json()
            done += 1
            n += clients

    async with httpx.AsyncClient(base_url=system.url, timeout=60, limits=limits) as client:
        started = time.monotonic()
        await asyncio.gather(*(loop(w, client) for w in range(clients)))
        return done / (time.monotonic() - started), answers


def recall(system: System, answers: list[dict[str, Any]], truth: np.ndarray) -> float:
    found = [
        len(set(system.ids_of(a)) & set(t.tolist()))
        for a, t in zip(answers, truth, strict=True)
        if a
    ]
    return sum(found) / (10 * len(found))


def one_round(system: System, vectors: np.ndarray, queries: np.ndarray,
              truth: np.ndarray, seconds: float) -> dict[str, float]:  # fmt: skip
    out: dict[str, float] = {}
    system.start()
    try:
        for clients in (1, 4):
            target = system.create()
            requests = [system.add_body(target, i, vectors[i : i + BATCH])
                        for i in range(0, len(vectors), BATCH)]  # fmt: skip
            out[f"ingest x{clients} (vectors/s)"] = len(vectors) / post_all(
                system.url, requests, clients
            )
        assert system.count(target) == len(vectors)
        bodies = [system.query_body(target, q) for q in queries]
        for clients in (1, 4):
            rate, answers = asyncio.run(_query_rate(system, bodies, clients, seconds))
            out[f"queries x{clients} (queries/s)"] = rate
        out["recall@10"] = recall(system, answers, truth)
        out["memory before kill (MB)"] = rss_mb(system.pid)
        system.kill()
        started = time.perf_counter()
        system.start()
        path, body = bodies[0]
        _wait_until(lambda: httpx.post(system.url + path, content=body, timeout=30,
                                       headers={"content-type": "application/json"}
                                       ).status_code == 200)  # fmt: skip
        out["restart after kill -9 (s)"] = time.perf_counter() - started
        assert system.count(target) == len(vectors)
        out["memory after restart (MB)"] = rss_mb(system.pid)
    finally:
        system.stop()
    return out


HIGHER_IS_BETTER = ("vectors/s", "queries/s", "recall")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()
    binary = ensure_chroma()
    data = np.load(DATA).astype(np.float32)
    data /= np.linalg.norm(data, axis=1, keepdims=True)
    vectors, queries = data[: args.rows - QUERIES], data[args.rows - QUERIES : args.rows]
    truth = np.argsort(-(queries @ vectors.T), axis=1)[:, :10]
    root = Path(tempfile.mkdtemp(prefix="chroma-compare-"))
    rows: dict[str, list[tuple[float, float]]] = {}
    try:
        for round_ in range(args.rounds):
            results = {}
            for system in (
                Chroma(binary, root / f"chroma-{round_}"),
                Shoal(root / f"shoal-{round_}"),
            ):
                results[system.name] = one_round(system, vectors, queries, truth, args.seconds)
            for key in results["Shoal"]:
                pair = results["Shoal"][key], results["Chroma"][key]
                rows.setdefault(key, []).append(pair)
                print(f"round {round_ + 1} {key}: Shoal {pair[0]:.2f}, Chroma {pair[1]:.2f}",
                      flush=True)  # fmt: skip
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print()
    print(f"Machine: {platform.machine()}, {os.cpu_count()} cores, load average "
          f"{os.getloadavg()[0]:.2f}; {len(vectors)} x 384-d MiniLM vectors, chromadb "
          f"{CHROMA_VERSION}")  # fmt: skip
    print()
    print("| measure | Shoal (median) | Chroma (median) | ratio, higher is better for Shoal |")
    print("|---|---|---|---|")
    for key, pairs in rows.items():
        if any(word in key for word in HIGHER_IS_BETTER):
            ratio = statistics.median(s / c for s, c in pairs)
        else:
            ratio = statistics.median(c / s for s, c in pairs)
        print(f"| {key} | {statistics.median(s for s, _ in pairs):,.2f} "
              f"| {statistics.median(c for _, c in pairs):,.2f} | {ratio:.2f}x |")  # fmt: skip


if __name__ == "__main__":
    main()
