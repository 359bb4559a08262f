"""`shoal cluster up` starts a working local cluster and stops it cleanly."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.harness import REPO, free_port

pytestmark = pytest.mark.cluster


def test_cluster_up_and_down(tmp_path: Path) -> None:
    base = free_port()
    while any(free_port() == base + i for i in range(3)):
        base = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "node.cli", "cluster", "up", "--nodes", "3",
         "--base-port", str(base), "--data", str(tmp_path)],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        lines = []
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            line = process.stdout.readline().decode()
            lines.append(line)
            if "Ctrl-C stops every node" in line:
                break
        assert any("is up" in line for line in lines), lines
        views = [
            httpx.get(f"http://127.0.0.1:{base + i}/cluster", timeout=5).json() for i in range(3)
        ]
        leaders = {view["leader_id"] for view in views}
        assert len(leaders) == 1 and None not in leaders
        assert sum(view["role"] == "leader" for view in views) == 1
    finally:
        os.kill(process.pid, signal.SIGTERM)
        code = process.wait(60)
        assert process.stdout is not None
        process.stdout.close()
    assert code == 0
    for i in range(3):
        with pytest.raises(httpx.HTTPError):
            httpx.get(f"http://127.0.0.1:{base + i}/health", timeout=2)
