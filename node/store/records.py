"""The records a library holds, and the small structures that order them."""

from __future__ import annotations

import bisect
import heapq
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from node.commands import DocumentFields


@dataclass
class LibraryInfo:
    id: str
    name: str
    description: str | None
    dimension: int | None
    metric: str
    index_type: str
    index_params: dict[str, Any]
    embedding_model: str
    created_at: int
    updated_at: int
    # Index of the log entry that created it: its place in listings.
    created_index: int


@dataclass
class DocumentRecord:
    id: str
    fields: DocumentFields
    chunk_ids: list[str]
    created_at: int
    updated_at: int
    created_index: int


@dataclass
class ChunkRecord:
    id: str
    document_id: str
    row: int
    text: str
    page_number: int | None
    chunk_index: int | None
    created_at: int
    updated_at: int
    server_embedded: bool


# Where an item sits in a listing: (index of the log entry that created it, id).
OrderKey = tuple[int, str]


@dataclass
class CreationOrder:
    """Ids in the order the log created them, for cursor pagination.

    The key leads with the creating entry's index, so the order is the log's
    on every replica, whatever clock stamped the ids (an entry creates one
    item at most; the id is in the key to map a place back to its item).
    """

    keys: list[OrderKey] = field(default_factory=list)

    def add(self, item: str, created_index: int) -> None:
        key = (created_index, item)
        if not self.keys or key > self.keys[-1]:
            self.keys.append(key)
        else:
            bisect.insort(self.keys, key)

    def remove(self, item: str, created_index: int) -> None:
        key = (created_index, item)
        position = bisect.bisect_left(self.keys, key)
        if position < len(self.keys) and self.keys[position] == key:
            del self.keys[position]

    def page(self, after: OrderKey | None, limit: int) -> tuple[list[OrderKey], bool]:
        """Up to ``limit`` keys after ``after`` (which need not be listed any
        more), and whether more follow."""
        start = 0 if after is None else bisect.bisect_right(self.keys, after)
        chunk = self.keys[start : start + limit]
        return chunk, start + limit < len(self.keys)

    @property
    def items(self) -> list[str]:
        return [item for _, item in self.keys]

    def __len__(self) -> int:
        return len(self.keys)


class RowAllocator:
    """Hands out vector rows: the lowest freed row first, then new ones.

    Deterministic, so every replica places the same chunk in the same row.
    """

    def __init__(self, next_row: int = 0, free: list[int] | None = None) -> None:
        self.next_row = next_row
        self.free = sorted(free or [])

    def peek(self, count: int) -> npt.NDArray[np.int64]:
        """The rows :meth:`allocate` would hand out, without taking them."""
        reused = heapq.nsmallest(min(count, len(self.free)), self.free)
        fresh = range(self.next_row, self.next_row + count - len(reused))
        return np.asarray([*reused, *fresh], dtype=np.int64)

    def allocate(self, count: int) -> npt.NDArray[np.int64]:
        rows = [heapq.heappop(self.free) for _ in range(min(count, len(self.free)))]
        fresh = count - len(rows)
        rows.extend(range(self.next_row, self.next_row + fresh))
        self.next_row += fresh
        return np.asarray(rows, dtype=np.int64)

    def release(self, rows: npt.NDArray[np.int64]) -> None:
        for row in rows.tolist():
            heapq.heappush(self.free, int(row))

    def state(self) -> list[Any]:
        return [self.next_row, sorted(self.free)]
