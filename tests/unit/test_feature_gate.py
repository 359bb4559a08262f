"""A leader puts request fingerprints into the log only once every other
member has said, in its answers, that it reads them (an upgrade one node at
a time must not feed older followers commands they cannot read)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from node.engine import Engine
from node.settings import Settings
from replication.features import REQUEST_FINGERPRINTS
from replication.membership import bootstrap


class _Transport:
    def __init__(self, said: dict[str, frozenset[str] | None]) -> None:
        self.said = said

    def features_of(self, peer: str) -> frozenset[str] | None:
        return self.said.get(peer)


class _Raft:
    core = None  # the member list comes from the engine's own

    def __init__(self, transport: _Transport) -> None:
        self.transport = transport


def _engine(tmp_path: Path, said: dict[str, Any]) -> Engine:
    engine = Engine(Settings(data_dir=tmp_path, node_id="n1"))
    engine.membership = bootstrap({f"n{i}": f"http://127.0.0.1:{i}" for i in (1, 2, 3)})
    engine.raft = _Raft(_Transport(said))  # type: ignore[assignment]
    return engine


def test_fingerprints_wait_for_every_other_member(tmp_path: Path) -> None:
    new = frozenset({REQUEST_FINGERPRINTS})
    assert _engine(tmp_path, {"n2": new, "n3": new}).cluster_supports(REQUEST_FINGERPRINTS)
    assert not _engine(tmp_path, {"n2": new, "n3": frozenset()}).cluster_supports(
        REQUEST_FINGERPRINTS
    )  # n3 is an older node
    assert not _engine(tmp_path, {"n2": new}).cluster_supports(REQUEST_FINGERPRINTS)  # n3 unheard
    alone = Engine(Settings(data_dir=tmp_path / "one", node_id="n1"))
    alone.membership = bootstrap({"n1": "http://127.0.0.1:1"})
    assert alone.cluster_supports(REQUEST_FINGERPRINTS)
