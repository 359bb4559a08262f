"""A node started with --join that stopped before it was answered may be
started with --join again (it serves nothing while it joins, so it can hold
no history but an empty log segment)."""

from __future__ import annotations

from pathlib import Path

import pytest

from node.engine import Engine
from node.settings import Settings
from replication.membership import MembershipRefused


def _settings(path: Path, **extra: str) -> Settings:
    return Settings(data_dir=path, node_id="n4", cluster_secret="s", **extra)  # type: ignore[arg-type]


def test_a_join_that_never_finished_can_be_tried_again(tmp_path: Path) -> None:
    for _ in range(2):
        engine = Engine(_settings(tmp_path, join="http://127.0.0.1:1"))
        engine.open()
        assert engine.joining
        engine.close()


def test_join_is_refused_on_a_directory_with_data(tmp_path: Path) -> None:
    engine = Engine(Settings(data_dir=tmp_path, node_id="n4"))
    engine.open()  # a cluster of one of its own
    engine.close()
    (tmp_path / "cluster").unlink()  # as an older Shoal left it
    engine.stable.save(3, None)
    with pytest.raises(MembershipRefused, match="holds data"):
        Engine(_settings(tmp_path, join="http://127.0.0.1:1")).open()
