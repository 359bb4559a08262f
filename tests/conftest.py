from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.cluster_harness import ClusterProcesses
from tests.harness import NodeProcess


@pytest.fixture
def start_node(tmp_path: Path) -> Iterator[Callable[..., NodeProcess]]:
    """Start real nodes for one test; every one is stopped by pid afterwards."""
    started: list[NodeProcess] = []

    def start(*args: str, data: Path | None = None, wait: bool = True, **kw: Any) -> NodeProcess:
        node = NodeProcess(data or tmp_path / "data", *args, **kw)
        started.append(node)
        return node.start(wait=wait)

    yield start
    for node in started:
        node.kill()


@pytest.fixture
def make_cluster(tmp_path: Path) -> Iterator[Callable[..., ClusterProcesses]]:
    """Start real clusters of node processes for one test; all stopped afterwards."""
    made: list[ClusterProcesses] = []

    def make(size: int = 3, *extra: str, **kw: Any) -> ClusterProcesses:
        cluster = ClusterProcesses(tmp_path / f"c{len(made)}", size, *extra, **kw)
        made.append(cluster)
        return cluster.start()

    yield make
    for cluster in made:
        cluster.stop()


@pytest.fixture(scope="session")
def shared_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    """One real node for the API tests; each test works in its own library."""
    node = NodeProcess(tmp_path_factory.mktemp("api") / "data")
    node.start()
    yield node
    code = node.stop()
    assert code == 0, f"node did not shut down cleanly (exit {code}):\n{node.log()}"


@pytest.fixture
def api(shared_node: NodeProcess) -> Iterator[httpx.Client]:
    with shared_node.client() as client:
        yield client


@pytest.fixture
def library(api: httpx.Client) -> Callable[..., dict[str, Any]]:
    def create(**fields: Any) -> dict[str, Any]:
        body = {"name": f"lib-{uuid.uuid4().hex[:12]}", **fields}
        response = api.post("/libraries", json=body)
        assert response.status_code == 201, response.text
        result: dict[str, Any] = response.json()
        return result

    return create
