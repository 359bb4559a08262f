"""One compose stack for the container drills, brought up by the README's own block."""

from __future__ import annotations

import re
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.containers.compose import ComposeCluster, DockerEngine, run, unavailable
from tests.harness import REPO

MARKER = "<!-- compose-quickstart -->"
SECRET_LINE = "__SHOAL_TEST_SECRET__="


def readme_block() -> str:
    text = (REPO / "README.md").read_text()
    after = text.split(MARKER, 1)[1]
    return after.split("```bash\n", 1)[1].split("```", 1)[0]


def offline_script(block: str, project: str) -> str:
    """The block as a user without a registry runs it: the `docker compose
    ... up --build` line gives way to the offline command its comment names,
    and the project is this test's own (not a user's `shoal`)."""
    lines = block.splitlines()
    start = next(i for i, line in enumerate(lines) if "no registry:" in line)
    command = lines[start].split("no registry:", 1)[1]
    while command.rstrip().endswith("\\"):
        start += 1
        command = command.rstrip()[:-1] + " " + lines[start].lstrip("# ").strip()
    kept = [line for line in lines if not line.lstrip().startswith(("#", "docker compose "))]
    kept.insert(1, command.strip())
    script = "\n".join(kept)
    script = re.sub(r"-p shoal\b", f"-p {project}", script)
    script = script.replace(".venv/bin/", f"{Path(sys.executable).parent}/")
    return f"set -euo pipefail\n{script}\necho {SECRET_LINE}$SHOAL_CLUSTER_SECRET\n"


@dataclass
class Stack:
    cluster: ComposeCluster
    quickstart_output: str


@pytest.fixture(scope="package")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    why = unavailable()
    if why is not None:
        pytest.skip(why)
    engine = DockerEngine(tmp_path_factory.mktemp("docker") / "dockerd.log").start()
    project = f"shoaltest{uuid.uuid4().hex[:6]}"
    # compose refuses to run without a secret, even to take a stack down: this
    # one serves until the README's block says which secret it chose
    cluster = ComposeCluster(project, secret="until-the-readme-block-sets-one")
    try:
        done = run("bash", "-c", offline_script(readme_block(), project), timeout=1200,
                   check=False)  # fmt: skip
        secret = next((line.split("=", 1)[1] for line in done.stdout.splitlines()
                       if line.startswith(SECRET_LINE)), "")  # fmt: skip
        if secret:
            cluster.env["SHOAL_CLUSTER_SECRET"] = secret
        assert done.returncode == 0 and secret, (
            f"the README's compose block failed ({done.returncode}):\n"
            f"{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
        )
        yield Stack(cluster, done.stdout + done.stderr)
    finally:
        logs = cluster.compose("logs", "--no-color", "--tail", "60", check=False, timeout=60)
        (tmp_path_factory.getbasetemp() / f"{project}.log").write_text(logs.stdout)
        cluster.remove_everything()
        engine.stop()
