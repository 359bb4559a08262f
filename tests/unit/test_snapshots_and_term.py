from __future__ import annotations

from pathlib import Path

import pytest

from wal import CorruptSnapshot, CorruptStableState, SnapshotStore, StableStore


def write(store: SnapshotStore, index: int, records: list[object]) -> None:
    writer = store.begin(index, 1, {"format": 1})
    for record in records:
        writer.write(record)
    writer.commit()


def test_snapshot_round_trip_newest_first(tmp_path: Path) -> None:
    store = SnapshotStore(tmp_path)
    write(store, 10, [{"a": 1}])
    write(store, 20, [{"b": b"\x00\x01"}, [1, 2, 3]])
    info, meta, records = store.newest_valid() or pytest.fail("no snapshot")
    assert info.index == 20 and meta["index"] == 20 and meta["format"] == 1
    assert list(records) == [{"b": b"\x00\x01"}, [1, 2, 3]]


def test_damaged_newest_snapshot_falls_back(tmp_path: Path) -> None:
    store = SnapshotStore(tmp_path)
    write(store, 10, [{"a": 1}])
    write(store, 20, [{"b": 2}])
    newest = store.all()[0].path
    data = bytearray(newest.read_bytes())
    data[-10] ^= 0x01
    newest.write_bytes(bytes(data))
    with pytest.raises(CorruptSnapshot):
        store.read(store.all()[0])
    info, _, records = store.newest_valid() or pytest.fail("no snapshot")
    assert info.index == 10 and list(records) == [{"a": 1}]


def test_unfinished_snapshot_is_invisible(tmp_path: Path) -> None:
    store = SnapshotStore(tmp_path)
    writer = store.begin(5, 1)
    writer.write({"x": 1})
    # never committed (the process died here): invisible, and swept away by
    # the next store that opens the directory
    assert store.newest_valid() is None
    writer._file.close()
    assert SnapshotStore(tmp_path).newest_valid() is None
    assert not list(tmp_path.glob("*.tmp"))


def test_truncated_snapshot_without_end_record_is_rejected(tmp_path: Path) -> None:
    store = SnapshotStore(tmp_path)
    write(store, 3, [{"x": 1}, {"y": 2}])
    path = store.all()[0].path
    path.write_bytes(path.read_bytes()[:-12])
    assert store.newest_valid() is None


def test_prune_keeps_newest(tmp_path: Path) -> None:
    store = SnapshotStore(tmp_path)
    for index in (1, 2, 3, 4):
        write(store, index, [])
    kept = store.prune(2)
    assert [info.index for info in kept] == [4, 3]
    assert [info.index for info in store.all()] == [4, 3]


def test_term_and_vote_survive_and_never_go_back(tmp_path: Path) -> None:
    stable = StableStore(tmp_path / "term")
    assert stable.load().term == 0
    stable.save(3, "n2")
    again = StableStore(tmp_path / "term")
    assert again.load().term == 3 and again.value.voted_for == "n2"
    with pytest.raises(ValueError):
        again.save(2, None)


def test_damaged_term_file_is_refused(tmp_path: Path) -> None:
    stable = StableStore(tmp_path / "term")
    stable.save(4, "n1")
    data = bytearray((tmp_path / "term").read_bytes())
    data[10] ^= 0xFF
    (tmp_path / "term").write_bytes(bytes(data))
    with pytest.raises(CorruptStableState):
        StableStore(tmp_path / "term").load()
