"""A node that cut entries it may have acknowledged remembers it across
restarts until a leader has caught it up."""

from __future__ import annotations

from pathlib import Path

from node.engine import LOST_TAIL_MARKER, Engine
from node.settings import Settings
from wal import EntryKind, FileLogStore, LogEntry


def _engine(path: Path) -> Engine:
    # The log is made by hand, as by an older Shoal: no member list, so --peers.
    engine = Engine(Settings(data_dir=path, node_id="n1", peers="n1=http://127.0.0.1:1"))
    engine.open()
    return engine


def test_the_lost_tail_outlives_a_second_restart(tmp_path: Path) -> None:
    store = FileLogStore(tmp_path / "wal")
    store.open()
    store.append([LogEntry(i, 1, EntryKind.NOOP, b"") for i in range(1, 11)])
    store.sync()
    store.append([LogEntry(i, 1, EntryKind.NOOP, b"x" * 50) for i in range(11, 14)])
    for segment in store._segments:  # kill -9: no final sync  # noqa: SLF001
        import os

        os.close(segment.fd)
    newest = sorted((tmp_path / "wal").glob("*.wal"))[-1]
    with open(newest, "r+b") as handle:  # the last unsynced record torn by a power cut
        handle.seek(-20, 2)
        handle.write(b"\xff" * 20)
    first = _engine(tmp_path)
    assert first.recovery is not None and first.recovery.lost_tail
    first.close()
    second = _engine(tmp_path)  # nothing left to cut now, but the entries are still gone
    assert second.recovery is not None and second.recovery.lost_tail
    second._tail_recovered()  # a leader caught it up  # noqa: SLF001
    second.close()
    third = _engine(tmp_path)
    assert third.recovery is not None and not third.recovery.lost_tail
    assert not (tmp_path / LOST_TAIL_MARKER).exists()
    third.close()
