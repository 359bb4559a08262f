"""The snapshot a node takes when it goes quiet: it never captures a state a
failed apply left half done, and a node stopped while one is being written
stops at once, not after the compaction's 60 s timeout."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from node import commands as cmd
from node import engine as engine_module
from node.engine import Engine
from node.errors import NodeFailed
from node.settings import Settings
from node.store import snapshot_codec


async def _started(path: Path) -> Engine:
    engine = Engine(Settings(data_dir=path, node_id="n1", snapshot_when_quiet=0.2))
    engine.open()
    await engine.start()
    assert engine.raft is not None
    for _ in range(300):
        if engine.raft.is_leader:
            return engine
        await asyncio.sleep(0.01)
    raise AssertionError("a cluster of one did not lead")


async def _create(engine: Engine, name: str) -> int:
    assert engine.raft is not None
    command = cmd.CreateLibrary(f"lib-{name}", name, None, 2, "l2", "brute_force", {},
                                "local-hash-v1", 1)  # fmt: skip
    committed = await engine.raft.propose(cmd.encode(command))
    await engine.raft.wait_applied(committed.index, timeout=10)
    return committed.index


def test_no_snapshot_of_a_state_a_failed_apply_left(tmp_path: Path) -> None:
    """Once an apply failed (marked under the applier lock before the loop
    hears of it), a quiet snapshot is skipped and one asked for is refused."""

    async def scenario() -> None:
        engine = await _started(tmp_path / "data")
        try:
            applied = await _create(engine, "a")
            assert engine.raft is not None
            engine.raft.applier_failed = True
            engine._snapshot_if_quiet(applied)  # noqa: SLF001
            assert engine.last_snapshot is None
            with pytest.raises(NodeFailed):
                engine.snapshot_now()
            engine.raft.applier_failed = False
            engine._snapshot_if_quiet(applied)  # noqa: SLF001
            assert engine.last_snapshot is not None and engine.last_snapshot.index == applied
        finally:
            await engine.stop()

    asyncio.run(scenario())


def test_stopping_while_a_quiet_snapshot_is_written_takes_no_minute(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two snapshots are kept, so the third compacts the log through the
    Raft loop. A stop that comes while the quiet one is being written used
    to leave that compaction queued on a loop that no longer ran: close()
    waited out its 60 s timeout."""
    monkeypatch.setattr(engine_module, "QUIET_SNAPSHOT_MIN_BYTES", 0)
    writing = threading.Event()
    plain_write = snapshot_codec.Image.write

    def slow_write(self: Any, writer: Any) -> None:
        writing.set()
        time.sleep(1.0)
        plain_write(self, writer)

    async def scenario() -> None:
        engine = await _started(tmp_path / "data")
        for name in ("a", "b"):
            await _create(engine, name)
            await asyncio.to_thread(engine.snapshot_now)  # compacts through the loop
        monkeypatch.setattr(snapshot_codec.Image, "write", slow_write)
        engine._snapshot_finished = 0.0  # noqa: SLF001 - no rest owed for the last one
        await _create(engine, "c")
        for _ in range(500):
            if writing.is_set():
                break
            await asyncio.sleep(0.01)
        assert writing.is_set(), "no quiet snapshot began"
        started = time.monotonic()
        await engine.stop()
        assert time.monotonic() - started < 10

    asyncio.run(scenario())
