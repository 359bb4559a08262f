"""Reading the deployment files the way their engines would, without the engines.

No Docker engine or Kubernetes runs here, so the tests check what those would
act on: the Dockerfile's instructions, compose's interpolated YAML, and the
environment variable names the node and the worker really read.
"""

from __future__ import annotations

import ast
import json
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from node.settings import Settings
from tests.harness import REPO

INTERPOLATION = re.compile(
    r"\$\$|\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}"
)


@dataclass
class Dockerfile:
    """The instructions of each stage, continuation lines joined."""

    stages: list[list[tuple[str, str]]] = field(default_factory=list)
    global_args: list[str] = field(default_factory=list)

    @classmethod
    def read(cls, path: Path = REPO / "Dockerfile") -> Dockerfile:
        lines: list[str] = []
        pending = ""
        for raw in path.read_text().splitlines():
            if raw.lstrip().startswith("#") and not pending:
                continue
            if raw.rstrip().endswith("\\"):
                pending += raw.rstrip()[:-1] + " "
                continue
            line = (pending + raw).strip()
            pending = ""
            if line:
                lines.append(line)
        dockerfile = cls()
        for line in lines:
            keyword, _, rest = line.partition(" ")
            if keyword.upper() == "FROM":
                dockerfile.stages.append([])
            elif not dockerfile.stages:  # an ARG before the first FROM
                dockerfile.global_args.append(rest.strip())
                continue
            dockerfile.stages[-1].append((keyword.upper(), rest.strip()))
        return dockerfile

    def instructions(self, keyword: str, stage: int = -1) -> list[str]:
        return [rest for kw, rest in self.stages[stage] if kw == keyword]

    def env(self, stage: int = -1) -> dict[str, str]:
        """ENV key=value pairs of a stage (the only form this Dockerfile uses)."""
        values: dict[str, str] = {}
        for rest in self.instructions("ENV", stage):
            for pair in shlex.split(rest):
                key, sep, value = pair.partition("=")
                assert sep, f"ENV {rest!r}: use key=value"
                values[key] = value
        return values

    def exec_form(self, keyword: str, stage: int = -1) -> list[str]:
        """A JSON-array instruction (ENTRYPOINT, CMD, the HEALTHCHECK's CMD)."""
        (rest,) = self.instructions(keyword, stage)
        if keyword == "HEALTHCHECK":
            rest = rest[rest.index("CMD ") + len("CMD ") :]
        value = json.loads(rest)
        assert isinstance(value, list), f"{keyword} is not in exec form"
        return [str(part) for part in value]


def interpolate(text: str, environ: dict[str, str]) -> str:
    """Compose's ``${VAR}``, ``${VAR:-default}`` and ``${VAR:?error}``, and
    ``$$`` for a ``$`` left to the container's shell."""

    def one(match: re.Match[str]) -> str:
        if match[0] == "$$":
            return "$"
        name, op, arg = match["name"], match["op"], match["arg"] or ""
        value = environ.get(name)
        if op in (":-", "-"):
            return value if value else arg
        if op in (":?", "?"):
            if not value:
                raise KeyError(f"{name}: {arg}")
            return value
        return value or ""

    return INTERPOLATION.sub(one, text)


def compose(environ: dict[str, str], path: Path = REPO / "docker-compose.cluster.yml") -> Any:
    return yaml.safe_load(interpolate(path.read_text(), environ))


def kubernetes(path: Path = REPO / "deploy" / "k8s" / "shoal.yaml") -> list[Any]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def node_env_names() -> set[str]:
    """Every environment variable ``shoal serve`` reads (pydantic-settings)."""
    names: set[str] = set()
    prefix = str(Settings.model_config.get("env_prefix", ""))
    for name, info in Settings.model_fields.items():
        alias = info.validation_alias
        choices = getattr(alias, "choices", None)
        if choices:
            names |= {str(choice) for choice in choices}
        else:
            names.add(prefix.upper() + name.upper())
    return names


def worker_env_names() -> set[str]:
    """Every environment variable ``shoal worker`` reads: the names passed to
    ``os.environ.get``/``os.environ[...]`` in its module."""
    source = (REPO / "node" / "cli_questions.py").read_text()
    tree = ast.parse(source)
    constants = {
        target.id: node.value.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant)
        for target in node.targets
        if isinstance(target, ast.Name) and isinstance(node.value.value, str)
    }
    names: set[str] = set()
    for node in ast.walk(tree):
        key: ast.expr | None = None
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "get"
            and _is_environ(node.func.value)
            and node.args
        ):
            key = node.args[0]
        elif isinstance(node, ast.Subscript) and _is_environ(node.value):
            key = node.slice
        if isinstance(key, ast.Constant) and isinstance(key.value, str):
            names.add(key.value)
        elif isinstance(key, ast.Name) and key.id in constants:
            names.add(constants[key.id])
    return names


def _is_environ(node: ast.expr) -> bool:
    return isinstance(node, ast.Attribute) and node.attr == "environ"
