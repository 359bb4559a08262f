"""The README's SDK example, run as written against a real three-node cluster."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable

import pytest

from tests.cluster_harness import ClusterProcesses
from tests.harness import REPO

pytestmark = pytest.mark.cluster
MARKER = "<!-- sdk-example -->"


def readme_example() -> str:
    readme = (REPO / "README.md").read_text()
    after = readme.split(MARKER, 1)[1]
    assert after.lstrip().startswith("```python"), "the marker must precede the example"
    return after.split("```python", 1)[1].split("```", 1)[0]


def test_the_readme_sdk_example_runs(
    make_cluster: Callable[..., ClusterProcesses], tmp_path: os.PathLike[str]
) -> None:
    code = readme_example()
    assert len(code.strip().splitlines()) <= 22, "keep the README example short"
    cluster = make_cluster(3)
    urls = ",".join(node.url for node in cluster.nodes.values())
    ran = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        env={**os.environ, "SHOAL_URL": urls},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert ran.returncode == 0, ran.stderr
    lines = ran.stdout.splitlines()
    assert "Blue whales" in lines[0]  # the nearest chunk, and only "sea" chunks
    assert "Honey bees" not in ran.stdout
    served_by = lines[2].removeprefix("answered by ")
    assert served_by in cluster.nodes and served_by != cluster.leader()
    assert sorted(line.split()[1] for line in lines[3:]) == ["follower", "follower", "leader"]
