"""Schemathesis, every check, against a real node: the OpenAPI document says
what the node answers (problem+json for every refusal), bad input gets a
4xx, and nothing is a 5xx but the documented 503 (this node has no
Temporal server for questions). Bounded: a few examples per operation with a
fixed seed, about half a minute. What the checks may see is widened only in
tests/api/schemathesis/schemathesis.toml, each with its reason."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.harness import NodeProcess

CONFIG = Path(__file__).parent / "schemathesis" / "schemathesis.toml"


@pytest.mark.timeout(600)
def test_the_api_keeps_to_its_openapi_document(tmp_path: Path) -> None:
    binary = shutil.which("schemathesis", path=str(Path(sys.executable).parent))
    assert binary is not None, "schemathesis is a dev dependency (pyproject.toml)"
    node = NodeProcess(tmp_path / "data").start()
    try:
        run = subprocess.run(
            [binary, "--config-file", str(CONFIG), "run", f"{node.url}/openapi.json",
             "--checks", "all", "--max-examples", "10", "--seed", "1",
             "--phases", "examples,coverage,fuzzing", "--request-timeout", "10",
             "--generation-database", "none", "--no-color"],
            cwd=tmp_path, capture_output=True, text=True, timeout=540,
        )  # fmt: skip
    finally:
        node.kill()
    assert run.returncode == 0, run.stdout[-12_000:] + run.stderr[-2_000:]
