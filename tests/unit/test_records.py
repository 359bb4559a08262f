"""The frame format shared by the log and snapshots."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from wal import CorruptSnapshot, EntryKind, LogEntry, SnapshotStore
from wal.records import FRAME, encode_entry, scan_frames


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
