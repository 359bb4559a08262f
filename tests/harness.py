"""Real node processes on loopback, started and stopped by process id."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class NodeProcess:
    def __init__(
        self,
        data_dir: Path,
        *args: str,
        node_id: str = "n1",
        env: dict[str, str] | None = None,
    ) -> None:
        self.data_dir = data_dir
        self.args = list(args)
        self.node_id = node_id
        self.env = env or {}
        self.port = free_port()
        self.host = "127.0.0.1"
        self.scheme = "http"
        self.verify: Any = True  # how the test's own requests check the node's certificate
        self.wrapper: list[str] = []  # e.g. ip netns exec NAME: where the node runs
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = data_dir.parent / f"{data_dir.name}-{node_id}.log"
        self._log_file: Any = None

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}"

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def client(self, timeout: float = 30.0) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=timeout, verify=self.verify)

    def start(self, wait: bool = True, timeout: float = 60.0) -> NodeProcess:
        command = [
            *self.wrapper, sys.executable, "-m", "node.cli", "serve",
            "--data", str(self.data_dir),
            "--port", str(self.port),
            "--node-id", self.node_id,
            *self.args,
        ]  # fmt: skip
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log_file = open(self.log_path, "ab")  # noqa: SIM115
        env = {**os.environ, "PYTHONUNBUFFERED": "1", **self.env}
        self.process = subprocess.Popen(
            command, cwd=REPO, stdout=self._log_file, stderr=subprocess.STDOUT, env=env
        )
        if wait:
            self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"node exited with {self.process.returncode}:\n{self.log()}")
            try:
                ready = httpx.get(self.url + "/ready", timeout=1.0, verify=self.verify)
                if ready.status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise TimeoutError(f"node not ready after {timeout}s:\n{self.log()}")

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM by pid; SIGKILL if it does not exit in time. Returns the exit code."""
        if self.process is None:
            return 0
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                os.kill(self.process.pid, signal.SIGKILL)
                self.process.wait(10)
        return self._finish()

    def kill(self) -> None:
        """kill -9: no shutdown code runs."""
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait(10)
        self._finish()

    def _finish(self) -> int:
        assert self.process is not None
        code = self.process.returncode
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
        return int(code)

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-5000:]
        except FileNotFoundError:
            return ""

    def cluster(self) -> dict[str, Any]:
        response = httpx.get(self.url + "/cluster", timeout=30, verify=self.verify)
        response.raise_for_status()
        result: dict[str, Any] = response.json()
        return result
