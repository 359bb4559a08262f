"""The image's dependencies, pinned in deploy/requirements.lock and audited.

pip-audit asks a vulnerability service about every pinned version. Where no
service can be reached (this project's CI network reaches the package index
but not the per-version vulnerability data), the audit is skipped with a line
saying so, rather than passed: pip-audit itself then reports every package as
"not found" and "no known vulnerabilities", which would be a false all-clear.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from tests.harness import REPO

LOCK = REPO / "deploy" / "requirements.lock"


def _name(requirement: str) -> str:
    """PEP 503 normal form of a requirement's project name."""
    match = re.match(r"[A-Za-z0-9._-]+", requirement.strip())
    assert match is not None, requirement
    return re.sub(r"[-_.]+", "-", match.group()).lower()


def _pins() -> dict[str, str]:
    pins = {}
    for line in LOCK.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, equals, version = line.partition("==")
            assert equals, f"{LOCK.name}: {line!r} is not pinned with =="
            pins[_name(name)] = version
    return pins


def test_the_lock_pins_every_runtime_dependency() -> None:
    declared = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    pins = _pins()
    missing = sorted({_name(requirement) for requirement in declared} - pins.keys())
    assert not missing, f"deploy/requirements.lock lacks {missing}; make it again (see its header)"
    assert "COPY deploy/requirements.lock" in (REPO / "Dockerfile").read_text()


def test_the_locked_dependencies_have_no_known_vulnerabilities(tmp_path: Path) -> None:
    binary = shutil.which("pip-audit", path=str(Path(sys.executable).parent))
    assert binary is not None, "pip-audit is a dev dependency (pyproject.toml)"
    run = subprocess.run(
        [binary, "--requirement", str(LOCK), "--no-deps", "--disable-pip", "--format", "json",
         "--progress-spinner", "off", "--cache-dir", str(tmp_path / "cache"), "--timeout", "20"],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    try:
        report = json.loads(run.stdout)
    except json.JSONDecodeError:
        pytest.skip(f"pip-audit could not run against a vulnerability service: "
                    f"{run.stderr.strip()[-300:]}")  # fmt: skip
    dependencies = report["dependencies"]
    audited = [d for d in dependencies if not d.get("skip_reason")]
    if not audited:
        pytest.skip(f"pip-audit could audit none of the {len(dependencies)} locked packages "
                    f"(no vulnerability data reachable from this network; first reason: "
                    f"{dependencies[0]['skip_reason'] if dependencies else 'none'})")  # fmt: skip
    vulnerable = {d["name"]: [v["id"] for v in d["vulns"]] for d in audited if d.get("vulns")}
    assert not vulnerable, f"known vulnerabilities in deploy/requirements.lock: {vulnerable}"
