"""Which write bodies are validated on the event loop and which on a worker.

A small write runs inline: the hop to a worker thread and back cost more
than the work, and under load a woken thread waits up to the interpreter's
switch interval for the GIL (on 3 nodes, 1 client: 161 writes/s with the hop,
293 without). Anything that splits text, calls an embedding model or checks
many numbers must still leave the loop, where Raft's heartbeats are sent.
"""

from __future__ import annotations

import asyncio
import threading

from node import models
from node.service import INLINE_FLOATS, _is_small, _off_loop_unless_small


def chunk(dim: int | None, text: str = "") -> models.ChunkCreate:
    return models.ChunkCreate(text=text, embedding=None if dim is None else [0.5] * dim)


def test_a_few_given_vectors_are_small() -> None:
    assert _is_small([chunk(384)] * 10, None)
    assert _is_small([models.ChunkUpdate(metadata=models.ChunkMetadata(page_number=3))], None)


def test_text_embedding_or_many_numbers_are_not() -> None:
    assert not _is_small(None, "a long text to split")
    assert not _is_small([chunk(None, "embed me")], None)  # a model call
    assert not _is_small([models.ChunkUpdate(text="re-embed me")], None)
    assert not _is_small([chunk(8)] * 33, None)
    assert not _is_small([chunk(INLINE_FLOATS // 2 + 1)] * 2, None)


def test_small_work_stays_on_the_loop_thread_and_large_work_leaves_it() -> None:
    async def where(small: bool) -> str:
        return await _off_loop_unless_small(lambda: threading.current_thread().name, small=small)

    loop_thread = threading.current_thread().name
    assert asyncio.run(where(small=True)) == loop_thread
    assert asyncio.run(where(small=False)) != loop_thread
