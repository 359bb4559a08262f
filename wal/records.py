"""Log entries and the frame format that protects them on disk.

A frame is ``<u32 length><u32 crc32(length field + body)><body>``; for a log
entry the body is the msgpack array ``[index, term, kind, payload]``. The
checksum covers the length too, so every byte of a frame is checked (format
version 1 checked the body only). A frame whose length is zero, runs
past the end of the data, or whose checksum does not match ends the readable
part of a buffer; callers decide whether that is a torn tail or corruption
(see :func:`scan_frames`).
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from enum import IntEnum

import msgpack

FRAME = struct.Struct("<II")  # length, checksum
LENGTH = struct.Struct("<I")
MAX_FRAME_BYTES = 1 << 30


class EntryKind(IntEnum):
    """What a log entry carries. Only COMMAND changes the state machine."""

    NOOP = 0
    COMMAND = 1
    # A new member list (replication.membership.Configuration), in force on
    # every node from the moment the entry is in its log.
    CONFIG = 2


@dataclass(frozen=True, slots=True)
class LogEntry:
    index: int
    term: int
    kind: EntryKind
    payload: bytes

    def to_wire(self) -> list[object]:
        return [self.index, self.term, int(self.kind), self.payload]

    @classmethod
    def from_wire(cls, fields: object) -> LogEntry:
        if not isinstance(fields, list) or len(fields) != 4:
            raise ValueError("a log entry is a list of four fields")
        index, term, kind, payload = fields
        if not isinstance(index, int) or not isinstance(term, int):
            raise ValueError("log entry index and term must be integers")
        if not isinstance(payload, bytes):
            raise ValueError("log entry payload must be bytes")
        return cls(index=index, term=term, kind=EntryKind(kind), payload=payload)


def encode_body(obj: object) -> bytes:
    return msgpack.packb(obj, use_bin_type=True)


def decode_body(body: bytes | memoryview) -> object:
    return msgpack.unpackb(body, raw=False, strict_map_key=False)


def _checksum(length_field: bytes | memoryview, body: bytes | memoryview) -> int:
    return zlib.crc32(body, zlib.crc32(length_field))


def frame(body: bytes) -> bytes:
    size = len(body)
    return FRAME.pack(size, _checksum(LENGTH.pack(size), body)) + body


def encode_entry(entry: LogEntry) -> bytes:
    return frame(encode_body(entry.to_wire()))


@dataclass(frozen=True, slots=True)
class ScanResult:
    """Frames read from a buffer.

    ``bodies`` are the valid frames in order with their start offsets;
    ``valid_end`` is where the valid data ends; ``bad_offset`` is where an
    invalid frame starts (None when the buffer ended cleanly) and ``reason``
    says what is wrong with it.
    """

    bodies: list[tuple[int, memoryview]]
    valid_end: int
    bad_offset: int | None
    reason: str


def _frame_at(buf: memoryview, off: int) -> tuple[memoryview | None, str]:
    if off + FRAME.size > len(buf):
        return None, f"a frame header is cut short at byte {off}"
    size, crc = FRAME.unpack_from(buf, off)
    if size == 0:
        return None, f"zero-length frame at byte {off}"
    if size > MAX_FRAME_BYTES:
        return None, f"implausible frame length {size} at byte {off}"
    end = off + FRAME.size + size
    if end > len(buf):
        return None, f"frame at byte {off} needs {size} bytes but the file ends first"
    body = buf[off + FRAME.size : end]
    if _checksum(buf[off : off + LENGTH.size], body) != crc:
        return None, f"checksum mismatch in the frame at byte {off}"
    return body, ""


def scan_frames(buf: memoryview, start: int = 0) -> ScanResult:
    bodies: list[tuple[int, memoryview]] = []
    off = start
    while off < len(buf):
        body, reason = _frame_at(buf, off)
        if body is None:
            return ScanResult(bodies, off, off, reason)
        bodies.append((off, body))
        off += FRAME.size + len(body)
    return ScanResult(bodies, off, None, "")
