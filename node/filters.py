"""Metadata filters: parsed once into a tree, evaluated as boolean masks.

Grammar (JSON)::

    filter := {"and": [filter, ...]} | {"or": [filter, ...]} | {"not": filter}
            | {"field": NAME, "op": OP, "value": VALUE}

Fields: chunk ``page_number``, ``chunk_index`` (numbers), ``created_at``
(date); document ``document_id``, ``title``, ``author``, ``document_type``,
``source_url`` (strings), ``tags`` (list of strings), ``document.created_at``
(date). ``chunk.`` and ``document.`` prefixes are accepted on every name.

Operators: ``eq``, ``ne``, ``in``, ``nin`` on every field but tags; ``gt``,
``gte``, ``lt``, ``lte`` on numbers and dates; ``contains_any`` and
``contains_all`` on tags; ``exists`` (value true or false) on every field.
A missing value never satisfies a comparison; ``ne`` and ``nin`` match it.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import Any

import numpy as np
import numpy.typing as npt

from node.store.columns import MISSING, ChunkColumns, DocumentColumns
from node.timeutil import parse_instant

Mask = npt.NDArray[np.bool_]

MAX_DEPTH = 32
MAX_LEAVES = 256
MAX_LIST = 10_000


class FilterError(ValueError):
    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}")


class Kind(Enum):
    NUMBER = "number"
    DATE = "date"
    STRING = "string"
    TAGS = "tags"
    DOCUMENT_ID = "document id"


CHUNK_FIELDS = {"page_number": Kind.NUMBER, "chunk_index": Kind.NUMBER, "created_at": Kind.DATE}
DOCUMENT_FIELDS = {
    "document_id": Kind.DOCUMENT_ID,
    "title": Kind.STRING,
    "author": Kind.STRING,
    "document_type": Kind.STRING,
    "source_url": Kind.STRING,
    "tags": Kind.TAGS,
    "document.created_at": Kind.DATE,
}

_COMPARE: dict[str, Callable[[Any, Any], Any]] = {
    "gt": operator.gt,
    "gte": operator.ge,
    "lt": operator.lt,
    "lte": operator.le,
}
_EQUALITY = ("eq", "ne", "in", "nin")
OPS_BY_KIND = {
    Kind.NUMBER: (*_EQUALITY, *_COMPARE, "exists"),
    Kind.DATE: (*_EQUALITY, *_COMPARE, "exists"),
    Kind.STRING: (*_EQUALITY, "exists"),
    Kind.DOCUMENT_ID: (*_EQUALITY, "exists"),
    Kind.TAGS: ("contains_any", "contains_all", "exists"),
}


@dataclass(frozen=True)
class Columns:
    """What a filter reads: the library's columns and its row count."""

    chunks: ChunkColumns
    documents: DocumentColumns
    rows: int


class Filter:
    def mask(self, columns: Columns) -> Mask:
        raise NotImplementedError


@dataclass(frozen=True)
class And(Filter):
    children: tuple[Filter, ...]

    def mask(self, columns: Columns) -> Mask:
        result = self.children[0].mask(columns)
        for child in self.children[1:]:
            result &= child.mask(columns)
        return result


@dataclass(frozen=True)
class Or(Filter):
    children: tuple[Filter, ...]

    def mask(self, columns: Columns) -> Mask:
        result = self.children[0].mask(columns)
        for child in self.children[1:]:
            result |= child.mask(columns)
        return result


@dataclass(frozen=True)
class Not(Filter):
    child: Filter

    def mask(self, columns: Columns) -> Mask:
        return ~self.child.mask(columns)


@dataclass(frozen=True)
class Leaf(Filter):
    field: str
    kind: Kind
    op: str
    value: Any

    def mask(self, columns: Columns) -> Mask:
        if self.field in CHUNK_FIELDS:
            return self._chunk_mask(columns)
        doc_mask = self._document_mask(columns.documents)
        codes = columns.chunks.doc_code[: columns.rows]
        rows: Mask = doc_mask[codes] & (codes != MISSING)
        return rows

    def _chunk_mask(self, columns: Columns) -> Mask:
        source = {
            "page_number": columns.chunks.page_number,
            "chunk_index": columns.chunks.chunk_index,
            "created_at": columns.chunks.created_at,
        }[self.field]
        values = source[: columns.rows]
        present = columns.chunks.doc_code[: columns.rows] != MISSING
        if self.kind is Kind.NUMBER:
            present = present & ~np.isnan(values)
        return _compare(values, present, self.op, self.value)

    def _document_mask(self, documents: DocumentColumns) -> Mask:
        size = documents.size
        live = documents.live[:size]
        if self.kind is Kind.TAGS:
            return _tags_mask(documents, self.op, self.value) & live
        if self.kind is Kind.DOCUMENT_ID:
            positions = np.arange(size)
            wanted: Any = _codes(self.value, lambda v: documents.codes.get(v, -1))
            return _compare(positions, live, self.op, wanted)
        if self.kind is Kind.DATE:
            return _compare(documents.created_at[:size], live, self.op, self.value)
        dictionary = documents.dictionaries[self.field]
        values = documents.strings[self.field][:size]
        present = live & (values != MISSING)
        wanted = _codes(self.value, dictionary.lookup) if self.op != "exists" else self.value
        strings: Mask = _compare(values, present, self.op, wanted) & live
        return strings


def _codes(value: Any, lookup: Callable[[str], int]) -> Any:
    if isinstance(value, list):
        return [lookup(item) for item in value]
    if isinstance(value, str):
        return lookup(value)
    return value


def _compare(values: npt.NDArray[Any], present: Mask, op: str, value: Any) -> Mask:
    result: Mask
    if op == "exists":
        result = present.copy() if value else ~present
    elif op in ("eq", "ne"):
        result = present & (values == value)
    elif op in ("in", "nin"):
        result = present & np.isin(values, value)
    else:
        result = present & _COMPARE[op](values, value)
    return ~result if op in ("ne", "nin") else result


def _tags_mask(documents: DocumentColumns, op: str, value: Any) -> Mask:
    doc_codes, tag_codes = documents.tag_pairs()
    has = np.zeros(documents.size, dtype=np.bool_)
    if op == "exists":
        has[doc_codes] = True
        return has if value else ~has
    wanted = np.unique([documents.tag_dictionary.lookup(tag) for tag in value])
    hit = np.isin(tag_codes, wanted)
    if op == "contains_any":
        has[doc_codes[hit]] = True
        return has
    if (wanted < 0).any():
        return has
    counts = np.bincount(doc_codes[hit], minlength=documents.size)
    result: Mask = counts >= len(wanted)
    return result


# ------------------------------------------------------------------ parsing
def _field_kind(name: Any, path: str) -> tuple[str, Kind]:
    if not isinstance(name, str):
        raise FilterError(path + ".field", "must be a string naming a metadata field")
    key = name
    if key.startswith("chunk."):
        key = key[len("chunk.") :]
        if key in CHUNK_FIELDS:
            return key, CHUNK_FIELDS[key]
    elif key.startswith("document."):
        if key in DOCUMENT_FIELDS:
            return key, DOCUMENT_FIELDS[key]
        key = key[len("document.") :]
        if key in DOCUMENT_FIELDS and key != "created_at":
            return key, DOCUMENT_FIELDS[key]
    elif key in CHUNK_FIELDS:
        return key, CHUNK_FIELDS[key]
    elif key in DOCUMENT_FIELDS:
        return key, DOCUMENT_FIELDS[key]
    known = ", ".join([*CHUNK_FIELDS, *DOCUMENT_FIELDS])
    raise FilterError(path + ".field", f"unknown field {name!r}; filterable fields are {known}")


def _scalar(kind: Kind, value: Any, path: str) -> Any:
    if kind is Kind.NUMBER:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise FilterError(path, f"expected a number, got {value!r}")
        if isinstance(value, int) and not -(1 << 63) <= value < 1 << 63:
            # (described by its size: a float of it may overflow, its digits
            # may be more than Python prints)
            raise FilterError(path, f"a whole number of {value.bit_length()} bits is beyond "
                                    "what a number field holds (-2**63 to 2**63-1)")  # fmt: skip
        if not np.isfinite(value):
            raise FilterError(path, "numbers in filters must be finite")
        return value
    if kind is Kind.DATE:
        try:
            return parse_instant(value)
        except ValueError as exc:
            raise FilterError(path, str(exc)) from None
    if not isinstance(value, str):
        raise FilterError(path, f"expected a string, got {value!r}")
    return value


def _value(kind: Kind, op: str, value: Any, path: str) -> Any:
    if op == "exists":
        if not isinstance(value, bool):
            raise FilterError(path, "exists takes true or false")
        return value
    if op in ("in", "nin", "contains_any", "contains_all"):
        if not isinstance(value, list) or not value:
            raise FilterError(path, f"{op} takes a non-empty list")
        if len(value) > MAX_LIST:
            raise FilterError(path, f"{op} takes at most {MAX_LIST} values")
        item_kind = Kind.STRING if kind is Kind.TAGS else kind
        return [_scalar(item_kind, item, f"{path}[{n}]") for n, item in enumerate(value)]
    if isinstance(value, list):
        raise FilterError(path, f"{op} compares with one value; use 'in' for a list")
    return _scalar(kind, value, path)


class _Budget:
    def __init__(self) -> None:
        self.leaves = 0


def parse(raw: Any, path: str = "filters") -> Filter:
    return _parse(raw, path, 0, _Budget())


def _parse(raw: Any, path: str, depth: int, budget: _Budget) -> Filter:
    if depth > MAX_DEPTH:
        raise FilterError(path, f"filters may nest at most {MAX_DEPTH} levels")
    if not isinstance(raw, dict) or not raw:
        raise FilterError(path, "a filter is an object: {and|or|not} or {field, op, value}")
    if "field" not in raw:
        if len(raw) != 1:
            raise FilterError(path, "a compound filter has exactly one key: and, or or not")
        ((key, inner),) = raw.items()
        if key == "not":
            return Not(_parse(inner, f"{path}.not", depth + 1, budget))
        if key in ("and", "or"):
            if not isinstance(inner, list) or not inner:
                raise FilterError(f"{path}.{key}", "takes a non-empty list of filters")
            children = tuple(
                _parse(child, f"{path}.{key}[{n}]", depth + 1, budget)
                for n, child in enumerate(inner)
            )
            return And(children) if key == "and" else Or(children)
        raise FilterError(path, f"unknown key {key!r}; expected and, or, not or field")
    unknown = set(raw) - {"field", "op", "value"}
    if unknown:
        raise FilterError(path, f"unknown keys {sorted(unknown)}; a condition has field, op, value")
    budget.leaves += 1
    if budget.leaves > MAX_LEAVES:
        raise FilterError(path, f"a filter may have at most {MAX_LEAVES} conditions")
    field, kind = _field_kind(raw["field"], path)
    op = raw.get("op")
    allowed = OPS_BY_KIND[kind]
    if op not in allowed:
        raise FilterError(
            path + ".op",
            f"operator {op!r} does not apply to {raw['field']!r} ({kind.value}); "
            f"use one of {', '.join(allowed)}",
        )
    if "value" not in raw:
        raise FilterError(path, "a condition needs a value")
    return Leaf(field, kind, op, _value(kind, op, raw["value"], path + ".value"))
