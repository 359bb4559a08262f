"""Server-side chunking: sentences packed into chunks of about ``size``
characters, each starting with up to ``overlap`` characters of the sentences
that ended the previous chunk. A sentence longer than ``size`` is split at
word boundaries."""

from __future__ import annotations

import re

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n\s*\n")


def _sentences(text: str, size: int) -> list[str]:
    pieces: list[str] = []
    for sentence in _SENTENCE_END.split(text):
        sentence = " ".join(sentence.split())
        # Walked by index: slicing off what was taken would copy the rest of
        # a long sentence at every cut.
        start, end = 0, len(sentence)
        while end - start > size:
            cut = sentence.rfind(" ", start, start + size)
            cut = cut if cut > start else start + size
            pieces.append(sentence[start:cut])
            start = cut + 1 if sentence.startswith(" ", cut) else cut
        if start < end:
            pieces.append(sentence[start:])
    return pieces


def _tail(sentences: list[str], overlap: int) -> list[str]:
    """The last sentences whose joined length fits in ``overlap``."""
    carried: list[str] = []
    length = -1
    for sentence in reversed(sentences):
        if length + 1 + len(sentence) > overlap:
            break
        carried.insert(0, sentence)
        length += 1 + len(sentence)
    return carried


def chunk_text(text: str, size: int, overlap: int, limit: int | None = None) -> list[str]:
    """The chunks; with ``limit``, no more than ``limit + 1`` of them (the
    caller refuses a text that makes more)."""
    if overlap >= size:
        raise ValueError("chunk_overlap must be smaller than chunk_size")
    chunks: list[str] = []
    current: list[str] = []
    new_in_current = 0
    for sentence in _sentences(text, size):
        joined = len(" ".join([*current, sentence]))
        if current and joined > size:
            if new_in_current:
                chunks.append(" ".join(current))
                if limit is not None and len(chunks) > limit:
                    return chunks
                current = _tail(current, overlap)
            while current and len(" ".join([*current, sentence])) > size:
                current.pop(0)
            new_in_current = 0
        current.append(sentence)
        new_in_current += 1
    if new_in_current:
        chunks.append(" ".join(current))
    return chunks
