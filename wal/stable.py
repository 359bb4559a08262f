"""Durable election state: the current term and whom this node voted for.

Stored as one small checksummed file replaced atomically, so a crash leaves
either the old or the new value, never a mix.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from wal.checked_file import DamagedFile, read_checked, write_checked

_MAGIC = b"SHOALTV1"


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
        try:
            stored = read_checked(self.path, _MAGIC)
        except DamagedFile:
            raise CorruptStableState(
                f"{self.path} is damaged; term and vote cannot be trusted"
            ) from None
        if stored is None:
            self._value = TermVote(0, None)
            return self._value
        if not isinstance(stored, list) or len(stored) != 2:
            raise CorruptStableState(f"{self.path} does not hold a term and a vote")
        self._value = TermVote(int(stored[0]), stored[1])
        return self._value

    @property
    def value(self) -> TermVote:
        return self._value

    def save(self, term: int, voted_for: str | None) -> None:
        """Durable before it returns."""
        if term < self._value.term:
            raise ValueError(f"term may not go backwards ({self._value.term} -> {term})")
        write_checked(self.path, _MAGIC, [term, voted_for])
        self._value = TermVote(term, voted_for)
