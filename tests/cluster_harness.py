"""A cluster of real node processes on loopback, and the faults tests apply to it."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx

from tests.harness import NodeProcess, free_port

SECRET = "test-cluster-secret"
SECRET_HEADER = {"X-Shoal-Cluster-Secret": SECRET}


class ClusterViews:
    """What every node says of the cluster (``/cluster``), and the agreements
    drills wait for. Needs ``nodes`` (id -> something with ``url``) and
    ``running()``; shared by the process and the container clusters."""

    nodes: Mapping[str, Any]
    api_headers: Mapping[str, str] = {}  # the API key, when the nodes ask for one
    verify: Any = True  # how the nodes' certificates are checked, over https

    def running(self) -> list[str]:
        raise NotImplementedError

    def status(self, node_id: str, digest_now: bool = False,
               timeout: float = 5.0) -> dict[str, Any] | None:  # fmt: skip
        node = self.nodes.get(node_id)
        if node is None:  # removed from the drill meanwhile
            return None
        query = "?digest=now" if digest_now else ""
        try:
            response = httpx.get(f"{node.url}/cluster{query}", timeout=timeout,
                                 headers=dict(self.api_headers), verify=self.verify)  # fmt: skip
        except httpx.HTTPError:
            return None
        return response.json() if response.status_code == 200 else None

    def leader(self, timeout: float = 20.0, exclude: tuple[str, ...] = ()) -> str:
        """The node that leads, once the running nodes agree on one."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            views = {n: self.status(n) for n in self.running() if n not in exclude}
            leaders = {v["leader_id"] for v in views.values() if v}
            roles = [n for n, v in views.items() if v and v["role"] == "leader"]
            if len(roles) == 1 and leaders == {roles[0]}:
                return roles[0]
            time.sleep(0.05)
        raise TimeoutError(f"no agreed leader within {timeout}s")

    def followers(self) -> list[str]:
        leader = self.leader()
        return [n for n in self.running() if n != leader]

    def converged(self, timeout: float = 30.0) -> str:
        """Wait until every running node applied the same index with the same
        digest; returns that digest."""
        deadline = time.monotonic() + timeout
        last: dict[str, Any] = {}
        while time.monotonic() < deadline:
            views = {n: self.status(n, digest_now=True,
                                    timeout=max(1.0, deadline - time.monotonic()))
                     for n in self.running()}  # fmt: skip
            last = {n: (v["applied_index"], v["commit_index"], v["digest_index"], v["state_digest"])
                    if v else None
                    for n, v in views.items()}  # fmt: skip
            values = set(last.values())
            if None not in values and len(values) == 1:
                return str(next(iter(values))[3])
            time.sleep(0.1)
        raise AssertionError(f"nodes did not converge: {last}")


class ClusterProcesses(ClusterViews):
    def __init__(
        self,
        root: Path,
        size: int = 3,
        *extra: str,
        election_timeout: float = 1.0,
        env: dict[str, str] | None = None,
        names: list[str] | None = None,
        scheme: str = "http",
        verify: Any = True,
    ):
        self.root = root
        self.verify = verify
        names = names or [f"n{i + 1}" for i in range(size)]
        ports = {name: free_port() for name in names[:size]}
        self.peers = ",".join(f"{node}={scheme}://127.0.0.1:{port}"
                              for node, port in ports.items())  # fmt: skip
        self.nodes: dict[str, NodeProcess] = {}
        for node_id, port in ports.items():
            node = NodeProcess(
                root / node_id, "--peers", self.peers, *extra, node_id=node_id,
                env={"SHOAL_CLUSTER_SECRET": SECRET, "SHOAL_FAULT_INJECTION": "1",
                     "SHOAL_ELECTION_TIMEOUT": str(election_timeout), **(env or {})},
            )  # fmt: skip
            node.port, node.scheme, node.verify = port, scheme, verify
            self.nodes[node_id] = node

    # ------------------------------------------------------------ lifecycle
    def start(self, timeout: float = 60.0) -> ClusterProcesses:
        for node in self.nodes.values():
            node.start(wait=False)
        for node in self.nodes.values():
            node.wait_ready(timeout)
        return self

    def stop(self) -> None:
        for node in self.nodes.values():
            if node.process is not None and node.process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(node.process.pid, signal.SIGCONT)
            node.kill()

    def kill(self, node_id: str) -> None:
        self.nodes[node_id].kill()

    def restart(self, node_id: str, wait: bool = False) -> None:
        node = self.nodes[node_id]
        node.start(wait=False)
        if wait:
            node.wait_ready()

    def pause(self, node_id: str) -> None:
        os.kill(self.nodes[node_id].pid, signal.SIGSTOP)

    def resume(self, node_id: str) -> None:
        os.kill(self.nodes[node_id].pid, signal.SIGCONT)

    def client(self, node_id: str) -> httpx.Client:
        return self.nodes[node_id].client()

    def running(self) -> list[str]:
        return [n for n, node in self.nodes.items()
                if node.process is not None and node.process.poll() is None]  # fmt: skip

    # --------------------------------------------------------------- faults
    def cut(self, node_id: str, others: list[str]) -> None:
        """Cut the links between ``node_id`` and ``others`` (both directions)."""
        self._faults(node_id, others, others)
        for other in others:
            current = self._get_faults(other)
            self._faults(other, sorted(set(current["drop_to"]) | {node_id}),
                         sorted(set(current["drop_from"]) | {node_id}))  # fmt: skip

    def isolate(self, node_id: str) -> None:
        self.cut(node_id, [n for n in self.nodes if n != node_id])

    def lossy(self, drop: float, duplicate: float, delay: float) -> None:
        """Every node's outgoing replication traffic becomes unreliable."""
        for node_id in self.running():
            self._faults(node_id, [], [], drop_rate=drop, duplicate_rate=duplicate,
                         max_delay=delay)  # fmt: skip

    def split(self, groups: list[list[str]]) -> None:
        """Only nodes in the same group can talk (replaces earlier cuts)."""
        for group in groups:
            others = [n for n in self.nodes if n not in group]
            for node_id in group:
                if node_id in self.running():
                    self._faults(node_id, others, others)

    def heal(self, timeout: float = 30.0) -> None:
        """Clear every running node's faults, waiting for a node restarted
        moments ago to listen."""
        for node_id in self.running():
            deadline = time.monotonic() + timeout
            while True:
                try:
                    self._faults(node_id, [], [])
                    break
                except httpx.ConnectError:
                    if time.monotonic() > deadline or node_id not in self.running():
                        raise
                    time.sleep(0.1)

    def _faults(
        self, node_id: str, drop_to: list[str], drop_from: list[str], **rates: float
    ) -> None:
        response = httpx.post(
            self.nodes[node_id].url + "/_cluster/faults",
            headers=SECRET_HEADER,
            json={"drop_to": drop_to, "drop_from": drop_from, **rates},
            timeout=10,
        )
        response.raise_for_status()

    def _get_faults(self, node_id: str) -> dict[str, list[str]]:
        response = httpx.get(
            self.nodes[node_id].url + "/_cluster/faults", headers=SECRET_HEADER, timeout=10
        )
        response.raise_for_status()
        result: dict[str, list[str]] = response.json()
        return result

    # --------------------------------------------------------------- status
