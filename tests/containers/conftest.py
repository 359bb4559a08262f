"""One compose stack for the container drills, brought up by the README's own block."""

from __future__ import annotations

import socket
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.containers.compose import (
    NODE_PORTS,
    ComposeCluster,
    DockerEngine,
    EgressCounter,
    run,
    unavailable,
)
from tests.harness import REPO

QUICKSTART = "<!-- compose-quickstart -->"
OFFLINE = "<!-- compose-offline -->"
SECRET_LINE = "__SHOAL_TEST_SECRET__="
KEY_LINE = "__SHOAL_TEST_API_KEY__="


def readme_block(marker: str) -> str:
    text = (REPO / "README.md").read_text()
    after = text.split(marker, 1)[1]
    return after.split("```bash\n", 1)[1].split("```", 1)[0]


def offline_script(quickstart: str, offline: str, project: str) -> str:
    """The quickstart as a user without a registry runs it: its `docker
    compose ... up` line replaced by the offline block, as the README says;
    the project is this test's own, not a user's `shoal`."""
    lines = quickstart.splitlines()
    (up,) = [n for n, line in enumerate(lines) if line.startswith("docker compose ")]
    lines[up : up + 1] = offline.splitlines()
    script = "\n".join(lines)
    assert script.count("-p shoal ") == 1, "one compose command names the project"
    script = script.replace("-p shoal ", f"-p {project} ")
    script = script.replace(".venv/bin/", f"{Path(sys.executable).parent}/")
    return (f"set -euo pipefail\n{script}\necho {SECRET_LINE}$SHOAL_CLUSTER_SECRET\n"
            f"echo {KEY_LINE}$SHOAL_API_KEY\n")  # fmt: skip


@dataclass
class Stack:
    cluster: ComposeCluster
    quickstart_output: str
    engine_since: str  # docker's clock, when the fixture began (for `docker events`)
    egress: EgressCounter


@pytest.fixture(scope="package")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    why = unavailable() or ports_taken()
    if why is not None:
        pytest.skip(why)
    engine = DockerEngine(tmp_path_factory.mktemp("docker") / "dockerd.log")
    project = f"shoaltest{uuid.uuid4().hex[:6]}"
    # compose refuses to run without a secret, even to take a stack down: this
    # one serves until the README's block says which secret it chose
    cluster = ComposeCluster(project, secret="until-the-readme-block-sets-one",
                             api_key="until-the-readme-block-sets-one")  # fmt: skip
    egress = EgressCounter()
    try:
        engine.start()
        egress.install()
        script = offline_script(readme_block(QUICKSTART), readme_block(OFFLINE), project)
        done = run("bash", "-c", script, timeout=1200, check=False)
        secret = next((line.split("=", 1)[1] for line in done.stdout.splitlines()
                       if line.startswith(SECRET_LINE)), "")  # fmt: skip
        api_key = next((line.split("=", 1)[1] for line in done.stdout.splitlines()
                        if line.startswith(KEY_LINE)), "")  # fmt: skip
        if secret:
            cluster.env["SHOAL_CLUSTER_SECRET"] = secret
        if api_key:
            cluster.use_api_key(api_key)
        assert done.returncode == 0 and secret and api_key, (
            f"the README's compose block failed ({done.returncode}):\n"
            f"{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
        )
        yield Stack(cluster, done.stdout + done.stderr, engine.started_at, egress)
    finally:
        if engine.answers():
            logs = cluster.compose("logs", "--no-color", "--tail", "60", check=False, timeout=60)
            (tmp_path_factory.getbasetemp() / f"{project}.log").write_text(logs.stdout)
            cluster.remove_everything()
            egress.remove()
        engine.stop()


def ports_taken() -> str | None:
    """The stack publishes fixed ports on 127.0.0.1 (the README's); a stack
    of the user's own, or anything else there, would make `up` fail."""
    taken = []
    for port in (*NODE_PORTS.values(), 7233, 8080):
        with socket.socket() as probe:
            probe.settimeout(0.5)
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                taken.append(port)
    return f"ports {taken} on 127.0.0.1 are in use; the compose stack needs them" if taken else None
