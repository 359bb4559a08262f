"""Durable election state: the current term and whom this node voted for.

Stored as one small checksummed file replaced atomically, so a crash leaves
either the old or the new value, never a mix.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import msgpack

from wal.fileutil import write_atomic

_MAGIC = b"SHOALTV1"
_TRAILER = struct.Struct("<I")


class CorruptStableState(Exception):
    pass


@dataclass(frozen=True, slots=True)
class TermVote:
    term: int
    voted_for: str | None


class StableStore:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._value = TermVote(0, None)

    def load(self) -> TermVote:
        if not self.path.exists():
            self._value = TermVote(0, None)
            return self._value
        data = self.path.read_bytes()
        body = data[len(_MAGIC) : -_TRAILER.size]
        if (
            not data.startswith(_MAGIC)
            or len(data) < len(_MAGIC) + _TRAILER.size
            or _TRAILER.unpack(data[-_TRAILER.size :])[0] != zlib.crc32(body)
        ):
            raise CorruptStableState(f"{self.path} is damaged; term and vote cannot be trusted")
        term, voted_for = msgpack.unpackb(body, raw=False)
        self._value = TermVote(int(term), voted_for)
        return self._value

    @property
    def value(self) -> TermVote:
        return self._value

    def save(self, term: int, voted_for: str | None) -> None:
        """Durable before it returns."""
        if term < self._value.term:
            raise ValueError(f"term may not go backwards ({self._value.term} -> {term})")
        body = msgpack.packb([term, voted_for], use_bin_type=True)
        write_atomic(self.path, _MAGIC + body + _TRAILER.pack(zlib.crc32(body)))
        self._value = TermVote(term, voted_for)
