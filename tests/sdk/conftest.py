from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.cluster_harness import ClusterProcesses


@pytest.fixture
def make_cluster(tmp_path: Path) -> Iterator[Callable[..., ClusterProcesses]]:
    made: list[ClusterProcesses] = []

    def make(size: int = 3, *extra: str, **kw: float) -> ClusterProcesses:
        cluster = ClusterProcesses(tmp_path / f"c{len(made)}", size, *extra, **kw)
        made.append(cluster)
        return cluster.start()

    yield make
    for cluster in made:
        cluster.stop()
