"""Clients that write and read registers on a real cluster, recording a history.

A register is one library's ``description``. A write sets a unique value
(its Idempotency-Key is the value too); a read is a linearizable GET. Each
operation is recorded with invoke/complete times on one monotonic clock and
an outcome: ``ok``, ``fail`` (the server said it was not applied) or
``unknown`` (timeout, lost connection, or the server said so).
"""

from __future__ import annotations

import json
import os
import random
import threading
import time
from collections import defaultdict
from typing import Any

import httpx

from tests.cluster_harness import ClusterProcesses
from tests.history import Op

UNKNOWN_TYPES = ("outcome-unknown",)


def classify_write_failure(response: httpx.Response) -> str:
    """A 503 is 'fail' unless the server says the outcome is unknown."""
    try:
        problem = response.json()
    except ValueError:
        return "unknown"
    kind = str(problem.get("type", ""))
    return "unknown" if kind.endswith(UNKNOWN_TYPES) else "fail"


class RegisterWorkload:
    def __init__(
        self,
        cluster: ClusterProcesses,
        keys: list[str],
        clients: int = 4,
        seed: int = 0,
        timeout: float = 4.0,
    ) -> None:
        self.cluster = cluster
        self.keys = keys
        self.clients = clients
        self.seed = seed
        self.timeout = timeout
        self.ops: list[Op] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.first_ok_after: dict[float, float] = {}

    def start(self) -> RegisterWorkload:
        for client in range(self.clients):
            thread = threading.Thread(target=self._run, args=(client,), daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self) -> list[Op]:
        self._stop.set()
        for thread in self._threads:
            thread.join(self.timeout + 30)
        return list(self.ops)

    def _record(self, op: Op) -> None:
        with self._lock:
            self.ops.append(op)

    def ok_writes_between(self, start: float, end: float) -> int:
        with self._lock:
            return sum(
                1
                for op in self.ops
                if op.kind == "write" and op.outcome == "ok" and start <= op.complete <= end
            )

    def first_ok_write_after(self, moment: float) -> float | None:
        with self._lock:
            times = [
                op.complete
                for op in self.ops
                if op.kind == "write" and op.outcome == "ok" and op.invoke >= moment
            ]
        return min(times) if times else None

    def _run(self, client: int) -> None:
        rng = random.Random(self.seed * 100 + client)
        nodes = list(self.cluster.nodes)
        target = rng.choice(nodes)
        n = 0
        # One connection pool per client, as a real client keeps: a new httpx
        # client per request spends more CPU on TLS setup than the request.
        headers = dict(getattr(self.cluster, "api_headers", {}))
        with httpx.Client(timeout=self.timeout, headers=headers) as http:
            while not self._stop.is_set():
                key = rng.choice(self.keys)
                node = self.cluster.nodes.get(target)
                if node is None:  # a member removed meanwhile (membership drills)
                    target = rng.choice(list(self.cluster.nodes))
                    continue
                url = node.url
                if rng.random() < 0.6:
                    # unique across drills: the value is also the Idempotency-Key
                    value = f"s{self.seed}c{client}-{n}"
                    n += 1
                    target = self._write(http, url, key, value, target, nodes, rng)
                else:
                    target = self._read(http, url, key, target, nodes, rng)
                time.sleep(rng.uniform(0.0, 0.02))

    def _write(self, http: httpx.Client, url: str, key: str, value: str, target: str,
               nodes: list[str], rng: random.Random) -> str:  # fmt: skip
        started = time.monotonic()
        try:
            response = http.patch(
                f"{url}/libraries/{key}",
                json={"description": value},
                headers={"Idempotency-Key": value},
            )
        except httpx.HTTPError as exc:
            self._record(Op(key, "write", value, started, time.monotonic(), "unknown"))
            _pause_after(exc, rng)
            return rng.choice(nodes)
        ended = time.monotonic()
        if response.status_code == 307:
            # Refused before anything was written; the leader is named.
            self._record(Op(key, "write", value, started, ended, "fail"))
            return str(response.json().get("leader_id") or rng.choice(nodes))
        if response.status_code == 200:
            self._record(Op(key, "write", value, started, ended, "ok"))
            return target
        outcome = classify_write_failure(response) if response.status_code >= 500 else "fail"
        self._record(Op(key, "write", value, started, ended, outcome))  # type: ignore[arg-type]
        return rng.choice(nodes)

    def _read(self, http: httpx.Client, url: str, key: str, target: str, nodes: list[str],
              rng: random.Random) -> str:  # fmt: skip
        started = time.monotonic()
        try:
            response = http.get(f"{url}/libraries/{key}", params={"consistency": "linearizable"})
        except httpx.HTTPError as exc:
            _pause_after(exc, rng)
            return rng.choice(nodes)
        if response.status_code == 200:
            self._record(
                Op(key, "read", response.json()["description"], started, time.monotonic(), "ok")
            )
            return target
        return rng.choice(nodes)


def _pause_after(exc: httpx.HTTPError, rng: random.Random) -> None:
    """A refused connection comes back at once: pause as a client would,
    instead of spinning on a core the restarting nodes need."""
    if isinstance(exc, httpx.ConnectError):
        time.sleep(rng.uniform(0.05, 0.1))


class LeaderMonitor:
    """Polls every node's /cluster; remembers who claimed to lead each term."""

    def __init__(self, cluster: ClusterProcesses) -> None:
        self.cluster = cluster
        self.leaders: dict[int, set[str]] = defaultdict(set)
        self.terms: dict[str, list[int]] = defaultdict(list)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> LeaderMonitor:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        while not self._stop.is_set():
            for node_id in self.cluster.running():
                view = self.cluster.status(node_id)
                if view is None:
                    continue
                self.terms[node_id].append(int(view["term"]))
                if view["role"] == "leader":
                    self.leaders[int(view["term"])].add(node_id)
            time.sleep(0.1)

    def problems(self) -> list[str]:
        found = [f"term {term} had leaders {sorted(nodes)}"
                 for term, nodes in self.leaders.items() if len(nodes) > 1]  # fmt: skip
        return found


def make_registers(cluster: ClusterProcesses, count: int, prefix: str = "register") -> list[str]:
    leader = cluster.leader()
    keys = []
    with cluster.client(leader) as api:
        for n in range(count):
            response = api.post("/libraries", json={"name": f"{prefix}-{n}"})
            assert response.status_code == 201, response.text
            keys.append(str(response.json()["id"]))
    return keys


def final_reads(cluster: ClusterProcesses, keys: list[str]) -> list[Op]:
    """After healing: one linearizable read per register, to close the history."""
    leader = cluster.leader(timeout=30)
    ops = []
    with cluster.client(leader) as api:
        for key in keys:
            started = time.monotonic()
            response = api.get(f"/libraries/{key}", params={"consistency": "linearizable"})
            assert response.status_code == 200, response.text
            ops.append(
                Op(key, "read", response.json()["description"], started, time.monotonic(), "ok")
            )
    return ops


def verify(
    cluster: ClusterProcesses, workload_ops: list[Op], keys: list[str], monitor: LeaderMonitor
) -> dict[str, Any]:
    """The drill's closing checks: every register linearizable (so no
    acknowledged write lost and no failed write present), one leader per
    term, and equal state digests on all nodes."""
    from tests.history import check_history

    history = workload_ops + final_reads(cluster, keys)
    verdicts = check_history(history)
    bad = {key: verdict.reason for key, verdict in verdicts.items() if not verdict.ok}
    assert not bad, bad
    assert not monitor.problems(), monitor.problems()
    for node_id, terms in monitor.terms.items():
        assert terms == sorted(terms), f"{node_id}'s term went backwards: {terms}"
    digest = cluster.converged(timeout=60)
    counts: dict[str, int] = defaultdict(int)
    for op in workload_ops:
        counts[f"{op.kind}-{op.outcome}"] += 1
    report_counts(dict(counts))
    return {"digest": digest, "counts": dict(counts)}


def report_counts(counts: dict[str, int]) -> None:
    """With SHOAL_DRILL_REPORT set, append this drill's counts to that file
    (bench/drill_counts.py tallies them). Only checked histories get here."""
    target = os.environ.get("SHOAL_DRILL_REPORT")
    if target:
        drill = os.environ.get("PYTEST_CURRENT_TEST", "?").split(" ")[0]
        with open(target, "a") as handle:
            handle.write(json.dumps({"drill": drill, "counts": counts}) + "\n")
