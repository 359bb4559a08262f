"""How large an answer would be, told before it is built.

A query may ask for 1,000 hits with their embeddings and texts, a document
for all its chunks, a page for 1,000 documents with all their chunk ids: up
to gigabytes of JSON from one request. Building and encoding that holds the
whole answer in memory and the GIL for seconds, while the Raft loop waits to
send its heartbeats. So the size is worked out item by item before anything
is built, stopping as soon as it passes the node's limit:

- a query (or a document with its chunks) over the limit is refused, with a
  sentence saying what to ask for instead;
- a page is cut short instead (at least one item), and its cursor goes on
  from there, so a listing never dead-ends.

One item is always answered: its size was bounded when it was written.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

import orjson

from node.errors import ShoalError
from node.store.records import ChunkRecord, DocumentRecord

# A float32 widened to a Python float prints as up to 24 characters
# ("-0.10000000149011612, " and the like).
FLOAT_BYTES = 24
# Ids, keys, numbers and timestamps around an item's texts.
ITEM_BYTES = 300
CHUNK_ID_BYTES = 40
DEFAULT_LIMIT = 64 << 20  # --max-answer-bytes

Item = TypeVar("Item")


class AnswerTooLarge(ShoalError):
    status = 422
    slug = "answer-too-large"
    title = "The answer would be larger than this node sends"


def text_bytes(text: str | None) -> int:
    """Exactly what ``text`` takes in the JSON answer: escapes and UTF-8
    included (a control character takes six bytes, a CJK character three).
    Encoding one text at a time costs a copy of that text only."""
    return len(orjson.dumps(text)) if text else 0


def chunk_bytes(chunk: ChunkRecord, dimension: int, text: bool, embedding: bool) -> int:
    return (
        ITEM_BYTES
        + (text_bytes(chunk.text) if text else 0)
        + (FLOAT_BYTES * dimension if embedding else 0)
    )


def metadata_bytes(record: DocumentRecord) -> int:
    fields = record.fields
    named = (fields.title, fields.author, fields.source_url, fields.document_type)
    return ITEM_BYTES + sum(map(text_bytes, named)) + sum(text_bytes(t) + 1 for t in fields.tags)


def document_bytes(record: DocumentRecord) -> int:
    """A document's view: its metadata and its chunk ids."""
    return metadata_bytes(record) + CHUNK_ID_BYTES * len(record.chunk_ids)


def total(sizes: Iterable[int], limit: int) -> int:
    """The sum of ``sizes``, or the first partial sum above ``limit``."""
    running = 0
    for size in sizes:
        running += size
        if running > limit:
            break
    return running


def fitting(items: Iterable[tuple[Item, int]], limit: int) -> Iterator[Item]:
    """The items, with their sizes, as long as they fit in ``limit`` bytes
    together; the first one always."""
    running = 0
    for count, (item, size) in enumerate(items):
        running += size
        if count and running > limit:
            return
        yield item


def page(
    items: list[Item], size_of: Callable[[Item], int], limit: int, more: bool
) -> tuple[list[Item], bool]:
    """A page cut short to what fits in ``limit`` bytes (at least one item),
    and whether items follow it: a listing goes on from where it stopped."""
    kept = list(fitting(((item, size_of(item)) for item in items), limit))
    return kept, more or len(kept) < len(items)


def check(estimate: int, limit: int, what: str, instead: str) -> None:
    """Refuse an answer estimated above ``limit`` bytes."""
    if estimate > limit:
        raise AnswerTooLarge(
            f"{what} would be more than {_mib(limit)} of JSON, this node's limit "
            f"(--max-answer-bytes); {instead}"
        )


def _mib(size: int) -> str:
    return f"{size / (1 << 20):,.1f} MiB"
