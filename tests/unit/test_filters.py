"""Vectorized filter masks agree with a plain Python reading of the same filter."""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from node import filters
from node.commands import ChunkBatch, DocumentFields
from node.store.library import Library
from node.store.records import LibraryInfo
from node.timeutil import parse_instant

TITLES = ["alpha", "beta", None]
AUTHORS = ["ann", "bob", None]
TAGS = ["red", "green", "blue"]
DATES = ["2024-01-01", "2024-06-01", "2025-01-01"]


def build_library(seed: int) -> tuple[Library, list[dict[str, Any]]]:
    rng = random.Random(seed)
    library = Library(LibraryInfo("lib", "lib", None, 2, "dot", "brute_force", {}, "m", 0, 0, 1))
    rows: list[dict[str, Any]] = []
    from node.commands import AddDocument

    for d in range(8):
        fields = DocumentFields(
            title=rng.choice(TITLES),
            author=rng.choice(AUTHORS),
            created_at=parse_instant(rng.choice(DATES)),
            tags=rng.sample(TAGS, rng.randint(0, 3)),
        )
        count = rng.randint(0, 4)
        pages = [rng.choice([None, 1, 2, 3]) for _ in range(count)]
        batch = ChunkBatch(
            ids=[f"d{d}c{c}" for c in range(count)],
            texts=[""] * count,
            page_numbers=pages,
            chunk_indexes=list(range(count)),
            created_at=[parse_instant(rng.choice(DATES)) for _ in range(count)],
            server_embedded=[False] * count,
            dim=2,
            vectors=np.ones((count, 2), dtype="<f4").tobytes(),
        )
        library.add_document(AddDocument("lib", f"d{d}", fields, batch, 0), d + 2)
    for d in range(0, 8, 3):  # delete some, so codes and rows get reused
        library.delete_document(f"d{d}")
    for chunk in library.chunks.values():
        doc = library.documents[chunk.document_id]
        rows.append(
            {
                "row": chunk.row,
                "page_number": chunk.page_number,
                "chunk_index": chunk.chunk_index,
                "created_at": chunk.created_at,
                "document_id": doc.id,
                "title": doc.fields.title,
                "author": doc.fields.author,
                "tags": set(doc.fields.tags),
                "document.created_at": doc.fields.created_at,
            }
        )
    return library, rows


def naive(node: Any, row: dict[str, Any]) -> bool:
    if "and" in node:
        return all(naive(child, row) for child in node["and"])
    if "or" in node:
        return any(naive(child, row) for child in node["or"])
    if "not" in node:
        return not naive(node["not"], row)
    field, op, value = node["field"], node["op"], node["value"]
    have = row[field]
    if field in ("created_at", "document.created_at"):
        value = (
            [parse_instant(v) for v in value] if isinstance(value, list) else (parse_instant(value))
        )
    if op == "exists":
        return (bool(have) if field == "tags" else have is not None) == value
    if op == "contains_any":
        return bool(have & set(value))
    if op == "contains_all":
        return set(value) <= have
    if op in ("ne", "nin"):
        return not naive(
            {"field": field, "op": "eq" if op == "ne" else "in", "value": node["value"]}, row
        )
    if have is None:
        return False
    if op == "eq":
        return bool(have == value)
    if op == "in":
        return have in value
    return {"gt": have > value, "gte": have >= value, "lt": have < value, "lte": have <= value}[op]


leaf = st.one_of(
    st.builds(
        lambda f, o, v: {"field": f, "op": o, "value": v},
        st.sampled_from(["page_number", "chunk_index"]),
        st.sampled_from(["eq", "ne", "gt", "gte", "lt", "lte"]),
        st.integers(0, 3),
    ),
    st.builds(
        lambda f, o, v: {"field": f, "op": o, "value": v},
        st.sampled_from(["created_at", "document.created_at"]),
        st.sampled_from(["eq", "gt", "lte"]),
        st.sampled_from(DATES),
    ),
    st.builds(
        lambda f, o, v: {"field": f, "op": o, "value": v},
        st.sampled_from(["title", "author"]),
        st.sampled_from(["eq", "ne"]),
        st.sampled_from(["alpha", "beta", "ann", "bob", "zed"]),
    ),
    st.builds(
        lambda f, o, v: {"field": f, "op": o, "value": v},
        st.sampled_from(["title", "author", "page_number"]),
        st.sampled_from(["in", "nin"]),
        st.lists(st.sampled_from(["alpha", "ann", "zed"]), min_size=1, max_size=3),
    ),
    st.builds(
        lambda o, v: {"field": "tags", "op": o, "value": v},
        st.sampled_from(["contains_any", "contains_all"]),
        st.lists(st.sampled_from([*TAGS, "pink"]), min_size=1, max_size=3),
    ),
    st.builds(
        lambda f, v: {"field": f, "op": "exists", "value": v},
        st.sampled_from(["page_number", "title", "tags"]),
        st.booleans(),
    ),
    st.builds(
        lambda o, v: {"field": "document_id", "op": o, "value": v},
        st.sampled_from(["eq", "ne"]),
        st.sampled_from(["d1", "d2", "d7", "dx"]),
    ),
)
trees = st.recursive(
    leaf,
    lambda children: st.one_of(
        st.builds(lambda c: {"and": c}, st.lists(children, min_size=1, max_size=3)),
        st.builds(lambda c: {"or": c}, st.lists(children, min_size=1, max_size=3)),
        st.builds(lambda c: {"not": c}, children),
    ),
    max_leaves=6,
)


def _fix_in_values(node: Any) -> Any:
    """page_number 'in' lists need numbers."""
    if (
        isinstance(node, dict)
        and node.get("field") == "page_number"
        and node["op"] in ("in", "nin")
    ):
        return {**node, "value": [1, 3]}
    if isinstance(node, dict):
        return {
            k: [_fix_in_values(c) for c in v]
            if isinstance(v, list) and k in ("and", "or")
            else _fix_in_values(v)
            if k == "not"
            else v
            for k, v in node.items()
        }
    return node


@settings(max_examples=300, deadline=None)
@given(seed=st.integers(0, 5), tree=trees)
def test_mask_matches_naive(seed: int, tree: Any) -> None:
    tree = _fix_in_values(tree)
    library, rows = build_library(seed)
    parsed = filters.parse(tree)
    size = library.chunk_columns.size
    mask = parsed.mask(filters.Columns(library.chunk_columns, library.document_columns, size))
    for row in rows:
        assert bool(mask[row["row"]]) == naive(tree, row), (tree, row)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"field": "pages", "op": "eq", "value": 1}, "unknown field 'pages'"),
        ({"field": "title", "op": "gt", "value": "a"}, "does not apply"),
        ({"field": "tags", "op": "contains_any", "value": []}, "non-empty list"),
        ({"field": "page_number", "op": "eq", "value": "3"}, "expected a number"),
        ({"field": "page_number", "op": "eq", "value": True}, "expected a number"),
        ({"field": "created_at", "op": "gt", "value": "yesterday"}, "ISO 8601"),
        ({"field": "title", "op": "eq"}, "needs a value"),
        ({"and": []}, "non-empty list"),
        ({"and": [{"field": "title", "op": "eq", "value": "a"}], "or": []}, "exactly one key"),
        ({"xor": []}, "unknown key"),
        ([], "is an object"),
        ({"field": "title", "op": "eq", "value": ["a"]}, "use 'in'"),
    ],
)
def test_bad_filters_are_named(raw: Any, message: str) -> None:
    with pytest.raises(filters.FilterError, match=message):
        filters.parse(raw)


def test_depth_and_size_limits() -> None:
    deep: Any = {"field": "title", "op": "eq", "value": "a"}
    for _ in range(40):
        deep = {"not": deep}
    with pytest.raises(filters.FilterError, match="nest"):
        filters.parse(deep)
    wide = {"or": [{"field": "title", "op": "eq", "value": "a"}] * 300}
    with pytest.raises(filters.FilterError, match="at most"):
        filters.parse(wide)
