from __future__ import annotations

import os
from pathlib import Path

import pytest

from wal import CorruptLog, EntryKind, FileLogStore, LogEntry, LogGap
from wal.log_store import HEADER


def entries(lo: int, hi: int, term: int = 1, size: int = 10) -> list[LogEntry]:
    return [
        LogEntry(i, term, EntryKind.COMMAND, f"payload-{i}-".encode() * size)
        for i in range(lo, hi + 1)
    ]


def opened(path: Path, **kw: int) -> FileLogStore:
    store = FileLogStore(path, **kw)
    store.open()
    return store


def test_append_read_back_and_reopen(tmp_path: Path) -> None:
    store = opened(tmp_path)
    assert store.last_index() == 0
    store.append(entries(1, 50))
    store.sync()
    assert store.entries(10, 12) == entries(1, 50)[9:12]
    store.close()
    again = opened(tmp_path)
    assert again.last_index() == 50
    assert again.entries(1, 50) == entries(1, 50)
    assert again.term_at(50) == 1 and again.term_at(0) == 0 and again.term_at(51) is None


def test_segments_roll_and_compaction_keeps_the_newest(tmp_path: Path) -> None:
    store = opened(tmp_path, segment_bytes=4096)
    store.append(entries(1, 200))
    store.sync()
    assert store.segment_count() > 3
    assert store.entries(1, 200) == entries(1, 200)
    removed = store.compact_until(150)
    assert removed > 0
    assert store.first_index() <= 151
    assert store.entries(151, 200) == entries(151, 200)
    with pytest.raises(LogGap):
        store.entries(1, 5)
    store.close()
    again = opened(tmp_path, segment_bytes=4096)
    assert again.first_index() == store_first(tmp_path)
    assert again.last_index() == 200


def store_first(path: Path) -> int:
    return int(sorted(p.name for p in path.glob("*.wal"))[0].split(".")[0])


def test_append_must_be_contiguous(tmp_path: Path) -> None:
    store = opened(tmp_path)
    store.append(entries(1, 3))
    with pytest.raises(ValueError):
        store.append(entries(5, 6))


def test_truncate_after_across_segments(tmp_path: Path) -> None:
    store = opened(tmp_path, segment_bytes=4096)
    store.append(entries(1, 100))
    store.truncate_after(30)
    assert store.last_index() == 30
    store.append(entries(31, 40, term=2))
    store.sync()
    store.close()
    again = opened(tmp_path, segment_bytes=4096)
    assert again.last_index() == 40
    assert again.term_at(31) == 2 and again.term_at(30) == 1


def _segment(path: Path) -> Path:
    return sorted(path.glob("*.wal"))[-1]


def test_torn_tail_is_cut_and_reported(tmp_path: Path) -> None:
    store = opened(tmp_path)
    store.append(entries(1, 10))
    store.close()
    segment = _segment(tmp_path)
    size = segment.stat().st_size
    with open(segment, "r+b") as handle:
        handle.truncate(size - 7)  # the last frame loses its end
    again = FileLogStore(tmp_path)
    report = again.open()
    assert again.last_index() == 9
    assert report.torn_bytes_cut > 0 and "ends first" in report.torn_reason
    # The cut is durable: appending continues cleanly after entry 9.
    again.append(entries(10, 11))
    again.close()
    assert opened(tmp_path).last_index() == 11


def test_bit_flip_in_last_record_is_cut(tmp_path: Path) -> None:
    store = opened(tmp_path)
    store.append(entries(1, 10))
    store.close()
    segment = _segment(tmp_path)
    data = bytearray(segment.read_bytes())
    data[-3] ^= 0x40
    segment.write_bytes(bytes(data))
    again = FileLogStore(tmp_path)
    report = again.open()
    assert again.last_index() == 9
    assert "checksum" in report.torn_reason


def test_zero_filled_tail_is_cut(tmp_path: Path) -> None:
    store = opened(tmp_path)
    store.append(entries(1, 5))
    store.close()
    with open(_segment(tmp_path), "ab") as handle:
        handle.write(b"\0" * 4096)
    again = FileLogStore(tmp_path)
    report = again.open()
    assert again.last_index() == 5 and report.torn_bytes_cut == 4096


def test_damage_in_the_middle_refuses_to_open(tmp_path: Path) -> None:
    store = opened(tmp_path)
    store.append(entries(1, 10))
    store.close()
    segment = _segment(tmp_path)
    data = bytearray(segment.read_bytes())
    data[HEADER.size + 20] ^= 0xFF  # inside the first record's body
    segment.write_bytes(bytes(data))
    with pytest.raises(CorruptLog, match="middle"):
        FileLogStore(tmp_path).open()


def test_damage_in_an_older_segment_refuses_to_open(tmp_path: Path) -> None:
    store = opened(tmp_path, segment_bytes=4096)
    store.append(entries(1, 100))
    store.close()
    oldest = sorted(tmp_path.glob("*.wal"))[0]
    with open(oldest, "r+b") as handle:
        handle.truncate(oldest.stat().st_size - 5)
    with pytest.raises(CorruptLog):
        FileLogStore(tmp_path, segment_bytes=4096).open()


def test_half_written_segment_header_is_removed(tmp_path: Path) -> None:
    store = opened(tmp_path)
    store.append(entries(1, 3))
    store.close()
    (tmp_path / f"{4:020d}.wal").write_bytes(b"SHOAL")
    again = opened(tmp_path)
    assert again.last_index() == 3
    assert len(list(tmp_path.glob("*.wal"))) == 1


def test_reset_starts_after_a_snapshot(tmp_path: Path) -> None:
    store = opened(tmp_path)
    store.append(entries(1, 3))
    store.reset(101, 7)
    assert store.last_index() == 100 and store.term_at(100) == 7
    store.append(entries(101, 102, term=8))
    store.close()
    again = FileLogStore(tmp_path)
    again.open()
    assert again.first_index() == 101 and again.last_index() == 102


def test_files_are_synced(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    synced: list[int] = []
    real = os.fdatasync
    monkeypatch.setattr(os, "fdatasync", lambda fd: (synced.append(fd), real(fd))[1])
    store = opened(tmp_path)
    store.append(entries(1, 2))
    assert synced == [] or store.segment_count() == 1
    synced.clear()
    store.sync()
    assert len(synced) == 1
