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


@dataclass
class DocumentRecord:
    id: str
    fields: DocumentFields
    chunk_ids: list[str]
    created_at: int
    updated_at: int


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


@dataclass
class SortedIds:
    """Ids kept in order for cursor pagination (ids are time-ordered)."""

    items: list[str] = field(default_factory=list)

    def add(self, item: str) -> None:
        if not self.items or item > self.items[-1]:
            self.items.append(item)
        else:
            bisect.insort(self.items, item)

    def remove(self, item: str) -> None:
        position = bisect.bisect_left(self.items, item)
        if position < len(self.items) and self.items[position] == item:
            del self.items[position]

    def page(self, after: str | None, limit: int) -> tuple[list[str], bool]:
        """Up to ``limit`` ids after ``after``, and whether more follow."""
        start = 0 if after is None else bisect.bisect_right(self.items, after)
        chunk = self.items[start : start + limit]
        return chunk, start + limit < len(self.items)

    def __len__(self) -> int:
        return len(self.items)


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
