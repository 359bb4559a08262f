"""Metadata as numpy columns so filters evaluate as vectorized masks.

Chunk fields are indexed by vector row; document fields by a dense document
code, and a chunk's row points at its document's code. Strings are stored as
dictionary codes (0 means "no value"). Document tags are kept as
(document code, tag code) pairs, rebuilt lazily after a change.
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence
from typing import Any, TypeVar, cast

import numpy as np
import numpy.typing as npt

from node.commands import DocumentFields

MISSING = 0
STRING_FIELDS = ("title", "author", "document_type", "source_url")


class Dictionary:
    """Distinct strings of one field, each with a code >= 1."""

    def __init__(self) -> None:
        self._codes: dict[str, int] = {}

    def encode(self, value: str | None) -> int:
        if value is None:
            return MISSING
        code = self._codes.get(value)
        if code is None:
            code = self._codes[value] = len(self._codes) + 1
        return code

    def lookup(self, value: str) -> int:
        """The code of a known value, or -1 (matches nothing)."""
        return self._codes.get(value, -1)


Column = TypeVar("Column", bound=npt.NDArray[Any])


def _grow(array: Column, needed: int, fill: object) -> Column:
    if needed <= len(array):
        return array
    grown = np.full(max(needed, 2 * len(array)), fill, dtype=array.dtype)
    grown[: len(array)] = array
    return cast(Column, grown)


class ChunkColumns:
    def __init__(self) -> None:
        self.size = 0
        self.doc_code = np.zeros(64, dtype=np.int32)
        self.page_number = np.full(64, np.nan)
        self.chunk_index = np.full(64, np.nan)
        self.created_at = np.zeros(64, dtype=np.int64)

    def set_rows(
        self,
        rows: npt.NDArray[np.int64],
        doc_code: int,
        page_numbers: Sequence[int | None],
        chunk_indexes: Sequence[int | None],
        created_at: Sequence[int],
    ) -> None:
        if len(rows) == 0:
            return
        top = int(rows.max()) + 1
        self.doc_code = _grow(self.doc_code, top, 0)
        self.page_number = _grow(self.page_number, top, np.nan)
        self.chunk_index = _grow(self.chunk_index, top, np.nan)
        self.created_at = _grow(self.created_at, top, 0)
        self.size = max(self.size, top)
        self.doc_code[rows] = doc_code
        self.page_number[rows] = [np.nan if v is None else v for v in page_numbers]
        self.chunk_index[rows] = [np.nan if v is None else v for v in chunk_indexes]
        self.created_at[rows] = created_at

    def clear_rows(self, rows: npt.NDArray[np.int64]) -> None:
        self.doc_code[rows] = 0
        self.page_number[rows] = np.nan
        self.chunk_index[rows] = np.nan
        self.created_at[rows] = 0


class DocumentColumns:
    def __init__(self) -> None:
        self.dictionaries = {name: Dictionary() for name in STRING_FIELDS}
        self.tag_dictionary = Dictionary()
        self.strings = {name: np.zeros(64, dtype=np.int32) for name in STRING_FIELDS}
        self.created_at = np.zeros(64, dtype=np.int64)
        self.live = np.zeros(64, dtype=np.bool_)
        self.codes: dict[str, int] = {}
        self._free: list[int] = []
        self._next = 1
        self._tags: dict[int, tuple[int, ...]] = {}
        self._pairs: tuple[npt.NDArray[np.int32], npt.NDArray[np.int32]] | None = None

    @property
    def size(self) -> int:
        return self._next

    def allocate(self, document_id: str) -> int:
        code = heapq.heappop(self._free) if self._free else self._next
        self._next = max(self._next, code + 1)
        self.codes[document_id] = code
        for name in STRING_FIELDS:
            self.strings[name] = _grow(self.strings[name], self._next, 0)
        self.created_at = _grow(self.created_at, self._next, 0)
        self.live = _grow(self.live, self._next, False)
        self.live[code] = True
        return code

    def release(self, document_id: str) -> None:
        code = self.codes.pop(document_id)
        self.live[code] = False
        for name in STRING_FIELDS:
            self.strings[name][code] = 0
        self.created_at[code] = 0
        if self._tags.pop(code, None):
            self._pairs = None
        heapq.heappush(self._free, code)

    def set_fields(self, code: int, fields: DocumentFields) -> None:
        for name in STRING_FIELDS:
            self.strings[name][code] = self.dictionaries[name].encode(getattr(fields, name))
        self.created_at[code] = fields.created_at
        tags = tuple(sorted({self.tag_dictionary.encode(tag) for tag in fields.tags}))
        if self._tags.get(code, ()) != tags:
            self._pairs = None
            if tags:
                self._tags[code] = tags
            else:
                self._tags.pop(code, None)

    def tag_pairs(self) -> tuple[npt.NDArray[np.int32], npt.NDArray[np.int32]]:
        """(document codes, tag codes), one pair per tag of each document."""
        if self._pairs is None:
            docs = [code for code, tags in self._tags.items() for _ in tags]
            tags = [tag for code_tags in self._tags.values() for tag in code_tags]
            self._pairs = (np.asarray(docs, dtype=np.int32), np.asarray(tags, dtype=np.int32))
        return self._pairs
