"""The frame format shared by the log and snapshots."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from wal import CorruptSnapshot, EntryKind, LogEntry, SnapshotStore
from wal.records import FRAME, encode_entry, find_entry_frame, scan_frames


def one_frame() -> bytes:
    return encode_entry(LogEntry(7, 2, EntryKind.COMMAND, b"payload"))


def test_every_single_bit_flip_in_a_frame_is_caught() -> None:
    frame = one_frame()
    assert scan_frames(memoryview(frame)).bad_offset is None
    for bit in range(len(frame) * 8):
        damaged = bytearray(frame)
        damaged[bit // 8] ^= 1 << (bit % 8)
        scan = scan_frames(memoryview(bytes(damaged)))
        assert scan.bad_offset == 0 and not scan.bodies, f"bit {bit} went unnoticed"


def test_a_zeroed_header_is_not_a_frame() -> None:
    scan = scan_frames(memoryview(b"\0" * FRAME.size + one_frame()))
    assert scan.bad_offset == 0


def test_find_entry_frame_skips_garbage() -> None:
    garbage = bytes((n * 37 + 11) % 256 for n in range(2000)) + b"\x94" * 50
    assert find_entry_frame(garbage, 0) is None
    assert find_entry_frame(garbage + one_frame(), 0) == len(garbage)
    assert find_entry_frame(one_frame() + garbage, 1) is None


@pytest.mark.parametrize("number", [0, 127, 128, 300, 70_000, 2**33])
@pytest.mark.parametrize("payload_size", [0, 255, 256, 70_000])
def test_find_entry_frame_finds_entries_of_every_width(number: int, payload_size: int) -> None:
    entry = LogEntry(number, number, EntryKind.NOOP, b"\x94" * payload_size)
    garbage = b"\x94\x01\x01\x01\xc4\x05" * 40  # entry-like tags that frame nothing
    assert find_entry_frame(garbage + encode_entry(entry), 0) == len(garbage)


def test_snapshot_of_the_old_format_is_rejected(tmp_path: Path) -> None:
    store = SnapshotStore(tmp_path)
    writer = store.begin(5, 1, {"format": 1})
    writer.write({"x": 1})
    info = writer.commit()
    assert store.read(info)[0]["index"] == 5
    data = bytearray(info.path.read_bytes())
    struct.pack_into("<H", data, 8, 1)  # the version field
    info.path.write_bytes(bytes(data))
    with pytest.raises(CorruptSnapshot, match="unknown header"):
        store.read(info)
