"""Small files whose damage is detected: magic, msgpack body, CRC32 trailer.

Written atomically (see :func:`wal.fileutil.write_atomic`), so a crash leaves
either the old or the new value, never a mix.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import msgpack

from wal.fileutil import write_atomic

_TRAILER = struct.Struct("<I")


class DamagedFile(Exception):
    """The file is there but its bytes do not check out."""


def read_checked(path: Path, magic: bytes) -> object | None:
    """The value stored at ``path``; None when there is no such file."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    body = data[len(magic) : -_TRAILER.size]
    if (
        not data.startswith(magic)
        or len(data) < len(magic) + _TRAILER.size
        or _TRAILER.unpack(data[-_TRAILER.size :])[0] != zlib.crc32(body)
    ):
        raise DamagedFile(f"{path} is damaged")
    try:
        value: object = msgpack.unpackb(body, raw=False)
    except Exception as exc:  # a checksum collision is all that leads here
        raise DamagedFile(f"{path} is damaged: {exc}") from None
    return value


def write_checked(path: Path, magic: bytes, value: object) -> None:
    """Durable before it returns."""
    body = msgpack.packb(value, use_bin_type=True)
    write_atomic(path, magic + body + _TRAILER.pack(zlib.crc32(body)))
