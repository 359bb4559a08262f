"""The image's build, repeated without a Docker engine.

The build stage's context is exactly what the Dockerfile COPYs; pip builds the
project's wheel from it with the Dockerfile's own command; the wheel is
installed into a fresh virtual environment; `shoal serve` from that install
(started outside the source tree, with the image's ENV) must pass the image's
HEALTHCHECK, take writes and stop cleanly. A package left out of the COPY
lines or out of pyproject's package list fails here.

One difference from the image: dependencies are not downloaded again. The new
environment sees this test environment's site-packages through a .pth file
(that adds the directory but none of its own .pth files, so the editable
install of this checkout stays invisible), and the wheel goes in with --no-deps.
"""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

from tests.deploy.manifests import Dockerfile
from tests.harness import REPO, free_port


def build_context(image: Dockerfile, into: Path) -> Path:
    """Lay out the build stage's working directory as its COPY lines do."""
    for rest in image.instructions("COPY", stage=0):
        *sources, target = shlex.split(rest)
        for source in sources:
            origin = REPO / source
            if origin.is_dir():
                shutil.copytree(origin, into / target, ignore=shutil.ignore_patterns(
                    "__pycache__", "*.egg-info", "build"))  # fmt: skip
            else:
                assert target.endswith("/"), f"COPY {rest}: copy files into a directory"
                (into / target).mkdir(parents=True, exist_ok=True)
                shutil.copy2(origin, into / target / origin.name)
    return into


def wheel_command(image: Dockerfile, wheels: Path) -> list[str]:
    """The build stage's `pip wheel` line, building only the project itself."""
    (run,) = [rest for rest in image.instructions("RUN", stage=0) if "pip wheel" in rest]
    words = shlex.split(run)
    assert words[:2] == ["pip", "wheel"] and words[-1] == ".", run
    words[words.index("--wheel-dir") + 1] = str(wheels)
    return [sys.executable, "-m", *words[:-1], "--no-deps", "."]


def fresh_environment(root: Path) -> Path:
    subprocess.run([sys.executable, "-m", "venv", str(root)], check=True, timeout=120)
    python = root / "bin" / "python"
    purelib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True, capture_output=True, text=True,
    ).stdout.strip()  # fmt: skip
    ours = sysconfig.get_paths()["purelib"]
    Path(purelib, "shoal-test-dependencies.pth").write_text(ours + "\n")
    return python


def test_the_image_build_installs_a_shoal_that_serves(tmp_path: Path) -> None:
    image = Dockerfile.read()
    context = build_context(image, tmp_path / "src")
    wheels = tmp_path / "wheels"
    built = subprocess.run(wheel_command(image, wheels), cwd=context, capture_output=True,
                           text=True, timeout=600)  # fmt: skip
    assert built.returncode == 0, built.stdout + built.stderr
    (wheel,) = wheels.glob("shoal-*.whl")

    python = fresh_environment(tmp_path / "venv")
    installed = subprocess.run(
        [str(python), "-m", "pip", "install", "--no-deps", "--no-index", str(wheel)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert installed.returncode == 0, installed.stdout + installed.stderr
    outside = tmp_path / "home"
    outside.mkdir()
    where = subprocess.run(
        [str(python), "-c", "import node, indexes, wal, replication, cluster, temporal, "
         "shoal_client; print('\\n'.join(m.__file__ for m in (node, indexes, wal, replication, "
         "cluster, temporal, shoal_client)))"],
        cwd=outside, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert where.returncode == 0, where.stderr
    for module_file in where.stdout.split():
        assert module_file.startswith(str(tmp_path / "venv")), module_file

    port = free_port()
    env = {**os.environ, **image.env(), "SHOAL_HOST": "127.0.0.1", "SHOAL_PORT": str(port),
           "SHOAL_DATA_DIR": str(tmp_path / "data"),
           "NUMBA_CACHE_DIR": str(tmp_path / "numba-cache")}  # fmt: skip
    env.pop("PYTHONPATH", None)
    # The image compiles the index kernels at build time, as its RUN line says.
    (warm,) = [rest for rest in image.instructions("RUN") if "indexes.warmup" in rest]
    words = shlex.split(warm)
    assert words[0] == "python", warm
    warmed = subprocess.run([str(python), *words[1:]], cwd=outside, env=env,
                            capture_output=True, text=True, timeout=600)  # fmt: skip
    assert warmed.returncode == 0, warmed.stdout + warmed.stderr
    assert list((tmp_path / "numba-cache").rglob("*.nbi")), "the warm-up cached no kernels"
    (entrypoint,) = image.exec_form("ENTRYPOINT")
    log = (tmp_path / "serve.log").open("wb")
    command = [str(python.parent / entrypoint), *image.exec_form("CMD")]
    server = subprocess.Popen(command, cwd=outside, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        healthcheck = image.exec_form("HEALTHCHECK")
        assert healthcheck[0] == "python"
        healthcheck[0] = str(python)
        deadline = time.monotonic() + 120
        while True:
            assert server.poll() is None, (tmp_path / "serve.log").read_text()
            probe = subprocess.run(healthcheck, env=env, capture_output=True, timeout=30)
            if probe.returncode == 0:
                break
            assert time.monotonic() < deadline, (tmp_path / "serve.log").read_text()
            time.sleep(0.5)

        from shoal_client import Client

        with Client(f"http://127.0.0.1:{port}") as shoal:
            library = shoal.create_library("from-the-wheel")
            shoal.add_document(library.id, text="Built the way the image is built.")
            hits = shoal.query(library.id, query_text="image built", k=1).results
            assert hits and "image" in (hits[0].text or "")
    finally:
        if server.poll() is None:
            os.kill(server.pid, signal.SIGTERM)
        code = server.wait(60)
        log.close()
    assert code == 0, (tmp_path / "serve.log").read_text()
