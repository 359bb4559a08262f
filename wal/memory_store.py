"""In-memory twins of the log and term stores, for tests and simulations only.

They keep the same contracts as the file stores, and remember what was
synced, so a simulated crash (:meth:`MemoryLogStore.crash`) loses exactly
what a power cut would: everything appended since the last sync.
"""

from __future__ import annotations

from collections.abc import Sequence

from wal.log_store import LogGap
from wal.records import LogEntry
from wal.stable import TermVote


class MemoryLogStore:
    def __init__(self, start_index: int = 1, prev_term: int = 0) -> None:
        self._base = start_index - 1
        self._base_term = prev_term
        self._entries: list[LogEntry] = []
        self._synced = 0  # how many of _entries are durable
        self._synced_base = (self._base, self._base_term)
        self.bytes_written = 0

    def first_index(self) -> int:
        return self._base + 1

    def last_index(self) -> int:
        return self._base + len(self._entries)

    def last_term(self) -> int:
        return self.term_at(self.last_index()) or 0

    def term_at(self, index: int) -> int | None:
        if index == self._base:
            return self._base_term
        position = index - self._base - 1
        if 0 <= position < len(self._entries):
            return self._entries[position].term
        return None

    def entries(self, lo: int, hi: int) -> list[LogEntry]:
        if lo > hi:
            return []
        if lo < self.first_index() or hi > self.last_index():
            raise LogGap(f"entries {lo}..{hi} not in {self.first_index()}..{self.last_index()}")
        return self._entries[lo - self._base - 1 : hi - self._base]

    def append(self, entries: Sequence[LogEntry]) -> None:
        for entry in entries:
            if entry.index != self.last_index() + 1:
                raise ValueError(f"append of {entry.index} where {self.last_index() + 1} was due")
            self._entries.append(entry)
            self.bytes_written += len(entry.payload) + 16

    def sync(self) -> None:
        self._synced = len(self._entries)
        self._synced_base = (self._base, self._base_term)

    def truncate_after(self, index: int) -> None:
        keep = max(0, index - self._base)
        del self._entries[keep:]
        self._synced = min(self._synced, keep)

    def compact_until(self, index: int) -> int:
        drop = min(len(self._entries) - 1, index - self._base)
        if drop <= 0:
            return 0
        self._base_term = self._entries[drop - 1].term
        self._base += drop
        del self._entries[:drop]
        self._synced = max(0, self._synced - drop)
        self._synced_base = (self._base, self._base_term)
        return drop

    def reset(self, start_index: int, prev_term: int) -> None:
        self._entries.clear()
        self._base, self._base_term = start_index - 1, prev_term
        self.sync()

    def crash(self) -> None:
        """Forget everything not synced, as a power cut would."""
        del self._entries[self._synced :]
        self._base, self._base_term = self._synced_base


class MemoryStableStore:
    def __init__(self) -> None:
        self._value = TermVote(0, None)

    def load(self) -> TermVote:
        return self._value

    @property
    def value(self) -> TermVote:
        return self._value

    def save(self, term: int, voted_for: str | None) -> None:
        if term < self._value.term:
            raise ValueError(f"term may not go backwards ({self._value.term} -> {term})")
        self._value = TermVote(term, voted_for)
