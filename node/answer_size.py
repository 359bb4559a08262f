"""How large an answer would be, told before it is built.

A query may ask for 1,000 hits with their embeddings and texts, a document
for all its chunks, a page for 1,000 documents with all their chunk ids: up
to gigabytes of JSON from one request. Building and encoding that holds the
whole answer in memory and the GIL for seconds, while the Raft loop waits to
send its heartbeats. So the size is estimated from what the answer will hold
(a few operations per item, no copies) and a request over the node's limit
is refused with a sentence saying what to ask for instead.
"""

from __future__ import annotations

from collections.abc import Iterable

from node.errors import ShoalError
from node.store.records import ChunkRecord, DocumentRecord

# A float32 widened to a Python float prints as up to 24 characters
# ("-0.10000000149011612, " and the like).
FLOAT_BYTES = 24
# Ids, keys, numbers and timestamps around an item's texts.
ITEM_BYTES = 300
CHUNK_ID_BYTES = 40
DEFAULT_LIMIT = 64 << 20  # --max-answer-bytes


class AnswerTooLarge(ShoalError):
    status = 422
    slug = "answer-too-large"
    title = "The answer would be larger than this node sends"


def text_bytes(text: str | None) -> int:
    """UTF-8 bytes of ``text``, at most (no copy is made)."""
    if not text:
        return 0
    return len(text) if text.isascii() else 4 * len(text)


def chunk_bytes(chunk: ChunkRecord, dimension: int, text: bool, embedding: bool) -> int:
    return (
        ITEM_BYTES
        + (text_bytes(chunk.text) if text else 0)
        + (FLOAT_BYTES * dimension if embedding else 0)
    )


def metadata_bytes(record: DocumentRecord) -> int:
    fields = record.fields
    texts = sum(text_bytes(value) for value in (fields.title, fields.author, fields.source_url))
    return ITEM_BYTES + texts + sum(text_bytes(tag) + 4 for tag in fields.tags)


def document_bytes(record: DocumentRecord) -> int:
    """A document's view: its metadata and its chunk ids."""
    return metadata_bytes(record) + CHUNK_ID_BYTES * len(record.chunk_ids)


def check(estimate: int, limit: int, what: str, instead: str) -> None:
    """Refuse an answer estimated above ``limit`` bytes."""
    if estimate > limit:
        raise AnswerTooLarge(
            f"{what} would be about {_mib(estimate)} of JSON, above this node's limit of "
            f"{_mib(limit)} (--max-answer-bytes); {instead}"
        )


def chunks_bytes(
    chunks: Iterable[ChunkRecord], dimension: int, text: bool, embedding: bool
) -> int:
    return sum(chunk_bytes(chunk, dimension, text, embedding) for chunk in chunks)


def _mib(size: int) -> str:
    return f"{size / (1 << 20):,.1f} MiB"
