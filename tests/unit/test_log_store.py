from __future__ import annotations

import os
import struct
from pathlib import Path

import pytest

from wal import CorruptLog, EntryKind, FileLogStore, LogEntry, LogGap
from wal.log_store import HEADER
from wal.records import FRAME

REFUSAL = "wipe this node's data directory and let it rejoin from the leader"


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


def test_compaction_keeps_enough_log_for_a_follower_a_little_behind(tmp_path: Path) -> None:
    store = opened(tmp_path, segment_bytes=4096)
    store.append(entries(1, 400))
    store.sync()
    # Enough log is kept once either limit is reached: 120 entries here.
    store.compact_until(390, keep_entries=120, keep_bytes=10**9)
    assert 400 - store.first_index() + 1 >= 120
    assert store.first_index() > 120  # but not everything: whole segments went
    store.compact_until(390, keep_entries=10**9, keep_bytes=8192)
    held = sum(p.stat().st_size for p in tmp_path.glob("*.wal"))
    assert held >= 8192
    first = store.first_index()
    store.compact_until(390, keep_entries=10**9, keep_bytes=10**9)
    assert store.first_index() == first  # neither limit reached: nothing more goes
    store.compact_until(390)
    assert store.first_index() > first
    store.close()


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


def crash(store: FileLogStore) -> None:
    """Stop the way kill -9 does: no final sync (the page cache survives)."""
    for segment in store._segments:
        os.close(segment.fd)


def frame_offsets(segment: Path) -> list[int]:
    data = segment.read_bytes()
    offsets, offset = [], HEADER.size
    while offset < len(data):
        offsets.append(offset)
        offset += FRAME.size + FRAME.unpack_from(data, offset)[0]
    return offsets


def synced_then_unsynced(path: Path, synced: int, unsynced: int) -> None:
    """A crashed log whose first ``synced`` entries were synced, the rest only written."""
    store = opened(path)
    store.append(entries(1, synced))
    store.sync()
    store.append(entries(synced + 1, synced + unsynced))
    crash(store)


def flip(segment: Path, offset: int, mask: int) -> None:
    data = bytearray(segment.read_bytes())
    data[offset] ^= mask
    segment.write_bytes(bytes(data))


def test_torn_tail_is_cut_and_reported(tmp_path: Path) -> None:
    synced_then_unsynced(tmp_path, 9, 1)
    segment = _segment(tmp_path)
    with open(segment, "r+b") as handle:
        handle.truncate(segment.stat().st_size - 7)  # the unsynced last frame loses its end
    again = FileLogStore(tmp_path)
    report = again.open()
    assert again.last_index() == 9
    assert report.torn_bytes_cut > 0 and "ends first" in report.torn_reason
    # The cut is durable: appending continues cleanly after entry 9.
    again.append(entries(10, 11))
    again.close()
    assert opened(tmp_path).last_index() == 11


@pytest.mark.parametrize("closed", [True, False], ids=["closed", "killed_after_sync"])
def test_bad_checksum_in_a_synced_last_frame_refuses_to_open(tmp_path: Path, closed: bool) -> None:
    store = opened(tmp_path)
    store.append(entries(1, 10))
    store.sync()
    if closed:
        store.close()
    else:
        crash(store)
    flip(_segment(tmp_path), -3, 0x40)  # inside the last, complete, acknowledged frame
    with pytest.raises(CorruptLog, match=REFUSAL):
        FileLogStore(tmp_path).open()


@pytest.mark.parametrize("bit", [0, 3, 9, 17, 31])
def test_flipped_length_bit_in_a_synced_frame_refuses_to_open(tmp_path: Path, bit: int) -> None:
    store = opened(tmp_path)
    store.append(entries(1, 200))
    store.sync()
    store.close()
    segment = _segment(tmp_path)
    flip(segment, frame_offsets(segment)[19] + bit // 8, 1 << (bit % 8))
    with pytest.raises(CorruptLog, match="made durable"):
        FileLogStore(tmp_path).open()


def test_zeroed_block_in_the_newest_segment_refuses_to_open(tmp_path: Path) -> None:
    store = opened(tmp_path)
    store.append(entries(1, 200))
    store.sync()
    store.close()
    segment = _segment(tmp_path)
    assert segment.stat().st_size > 4 * 4096
    with open(segment, "r+b") as handle:
        handle.seek(2 * 4096)
        handle.write(b"\0" * 4096)
    with pytest.raises(CorruptLog, match=REFUSAL):
        FileLogStore(tmp_path).open()


def test_log_shorter_than_what_it_made_durable_refuses_to_open(tmp_path: Path) -> None:
    store = opened(tmp_path)
    store.append(entries(1, 20))
    store.close()
    segment = _segment(tmp_path)
    with open(segment, "r+b") as handle:
        handle.truncate(frame_offsets(segment)[-1])  # whole frames gone, a clean end
    with pytest.raises(CorruptLog, match="made durable"):
        FileLogStore(tmp_path).open()


@pytest.mark.parametrize("where", ["last_frame", "middle_of_unsynced"])
def test_torn_write_past_the_synced_point_is_cut(
    tmp_path: Path, where: str, caplog: pytest.LogCaptureFixture
) -> None:
    synced_then_unsynced(tmp_path, 200, 20)
    segment = _segment(tmp_path)
    offsets = frame_offsets(segment)
    cut_at = offsets[-1] + 11 if where == "last_frame" else offsets[210] + 5
    with open(segment, "r+b") as handle:
        handle.truncate(cut_at)
    again = FileLogStore(tmp_path)
    report = again.open()
    survivors = 219 if where == "last_frame" else 210
    assert again.last_index() == survivors
    assert again.entries(1, survivors) == entries(1, survivors)
    assert report.torn_bytes_cut == cut_at - offsets[survivors]
    assert "cutting a torn tail" in caplog.text


def test_garbage_after_the_synced_end_is_cut(tmp_path: Path) -> None:
    store = opened(tmp_path)
    store.append(entries(1, 200))
    store.close()
    garbage = bytes((n * 37 + 11) % 256 for n in range(3000))
    with open(_segment(tmp_path), "ab") as handle:
        handle.write(garbage)
    again = FileLogStore(tmp_path)
    report = again.open()
    assert again.last_index() == 200 and report.torn_bytes_cut == len(garbage)
    assert again.entries(1, 200) == entries(1, 200)


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
    with pytest.raises(CorruptLog, match="made durable"):
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


def test_clean_open_reports_nothing_cut(tmp_path: Path) -> None:
    store = opened(tmp_path)
    store.append(entries(1, 20))
    store.close()
    report = FileLogStore(tmp_path).open()
    assert report.entries == 20 and report.torn_bytes_cut == 0
    assert not report.cut_may_include_acknowledged


def test_a_cut_tail_is_reported_as_possibly_acknowledged(tmp_path: Path) -> None:
    # Nothing was ever synced, so the mark is at the start, as after a crash
    # whose last synced batch never had its mark written.
    never_synced = opened(tmp_path)
    never_synced.append(entries(1, 200))
    crash(never_synced)
    flip(_segment(tmp_path), -3, 0x40)
    again = FileLogStore(tmp_path)
    report = again.open()
    assert again.last_index() == 199 and "checksum" in report.torn_reason
    assert report.cut_may_include_acknowledged


def test_a_hole_past_the_mark_is_cut_from_the_hole_on(tmp_path: Path) -> None:
    """Write-back leaves holes in unsynced data (pages land in any order):
    valid records after the hole do not make the node refuse to start."""
    never_synced = opened(tmp_path)
    never_synced.append(entries(1, 200))
    crash(never_synced)
    with open(_segment(tmp_path), "r+b") as handle:
        handle.seek(2 * 4096)
        handle.write(b"\0" * 4096)
    again = FileLogStore(tmp_path)
    report = again.open()
    assert again.last_index() < 200 and report.cut_may_include_acknowledged
    assert again.entries(1, again.last_index())[-1].index == again.last_index()


def test_a_new_segment_whose_header_never_arrived_is_removed(tmp_path: Path) -> None:
    store = FileLogStore(tmp_path, segment_bytes=4096)
    store.open()
    store.append(entries(1, 60))  # rolls into several segments, each synced first
    crash(store)
    newest = sorted(tmp_path.glob("*.wal"))[-1]
    size = newest.stat().st_size
    newest.write_bytes(bytes(size))  # created and sized, not one page written
    again = FileLogStore(tmp_path, segment_bytes=4096)
    report = again.open()
    assert again.last_index() >= 1 and report.torn_bytes_cut == size


def _synced_end_on_disk(segment: Path) -> int:
    return int(HEADER.unpack_from(segment.read_bytes(), 0)[5])


def test_truncation_lowers_the_mark_before_it_cuts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = opened(tmp_path)
    store.append(entries(1, 200))
    store.sync()
    store.sync()
    segment = _segment(tmp_path)
    assert _synced_end_on_disk(segment) == segment.stat().st_size
    events: list[tuple[str, int, int]] = []  # (call, mark on disk, size)
    real_fdatasync, real_ftruncate = os.fdatasync, os.ftruncate

    def fdatasync(fd: int) -> None:
        events.append(("fdatasync", 0, 0))
        real_fdatasync(fd)

    def ftruncate(fd: int, size: int) -> None:
        events.append(("ftruncate", _synced_end_on_disk(segment), size))
        real_ftruncate(fd, size)

    monkeypatch.setattr(os, "fdatasync", fdatasync)
    monkeypatch.setattr(os, "ftruncate", ftruncate)
    store.truncate_after(100)
    cut = next(n for n, (call, _, _) in enumerate(events) if call == "ftruncate")
    _, mark, size = events[cut]
    assert mark <= size and events[cut - 1][0] == "fdatasync"  # lowered, and durably so
    crash(store)
    again = FileLogStore(tmp_path)
    report = again.open()
    assert again.last_index() == 100 and report.torn_bytes_cut == 0


def test_open_makes_what_it_read_durable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = opened(tmp_path)
    store.append(entries(1, 5))  # written, never synced: a killed process leaves this
    crash(store)
    synced: list[int] = []
    real = os.fdatasync
    monkeypatch.setattr(os, "fdatasync", lambda fd: (synced.append(fd), real(fd))[1])
    again = opened(tmp_path)
    assert synced
    again.close()
    assert _synced_end_on_disk(_segment(tmp_path)) == _segment(tmp_path).stat().st_size


def test_damaged_segment_header_refuses_to_open(tmp_path: Path) -> None:
    store = opened(tmp_path)
    store.append(entries(1, 5))
    store.close()
    flip(_segment(tmp_path), 20, 0x01)  # inside prev_term
    with pytest.raises(CorruptLog, match="damaged header"):
        FileLogStore(tmp_path).open()


def test_segment_of_the_old_format_is_refused_with_a_sentence(tmp_path: Path) -> None:
    old_header = struct.pack("<8sHHQQ", b"SHOALWAL", 1, 0, 1, 0)
    (tmp_path / f"{1:020d}.wal").write_bytes(old_header + b"\0" * 64)
    with pytest.raises(CorruptLog, match="log format 1, which this Shoal does not read"):
        FileLogStore(tmp_path).open()
