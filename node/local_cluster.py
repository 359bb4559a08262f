"""``shoal cluster up``: several nodes as local processes, for development.

Each node gets its own port and data directory under ``--data``; they share
a cluster secret made up for the run. Ctrl-C (or SIGTERM) stops them all.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

READY_SECONDS = 60.0


def cluster_up(nodes: int, base_port: int, data: Path, host: str = "127.0.0.1") -> int:
    ids = [f"n{i + 1}" for i in range(nodes)]
    urls = {node: f"http://{host}:{base_port + i}" for i, node in enumerate(ids)}
    peers = ",".join(f"{node}={url}" for node, url in urls.items())
    secret = secrets.token_hex(16)
    env = {**os.environ, "SHOAL_CLUSTER_SECRET": secret}
    children: dict[str, subprocess.Popen[bytes]] = {}
    for i, node in enumerate(ids):
        command = [sys.executable, "-m", "node.cli", "serve", "--node-id", node,
                   "--host", host, "--port", str(base_port + i), "--peers", peers,
                   "--data", str(data / node), "--log-level", "warning"]  # fmt: skip
        children[node] = subprocess.Popen(command, env=env)

    def stop(*_: object) -> None:
        for child in children.values():
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        for child in children.values():
            try:
                child.wait(30)
            except subprocess.TimeoutExpired:
                child.kill()
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    _wait_ready(urls, children)
    print(f"shoal cluster of {nodes} is up (data in {data}):", flush=True)  # noqa: T201
    for node, url in urls.items():
        print(f"  {node}  {url}", flush=True)  # noqa: T201
    print("Ctrl-C stops every node.", flush=True)  # noqa: T201
    while True:
        for node, child in children.items():
            if child.poll() is not None:
                print(f"node {node} exited with {child.returncode}; stopping", flush=True)  # noqa: T201
                stop()
        time.sleep(0.5)


def _wait_ready(urls: dict[str, str], children: dict[str, subprocess.Popen[bytes]]) -> None:
    deadline = time.monotonic() + READY_SECONDS
    pending = set(urls)
    while pending and time.monotonic() < deadline:
        for node in list(pending):
            if children[node].poll() is not None:
                raise SystemExit(f"node {node} exited with {children[node].returncode}")
            try:
                if httpx.get(urls[node] + "/ready", timeout=1).status_code == 200:
                    pending.discard(node)
            except httpx.HTTPError:
                pass
        time.sleep(0.1)
    if pending:
        raise SystemExit(f"nodes {sorted(pending)} were not ready within {READY_SECONDS:g}s")
