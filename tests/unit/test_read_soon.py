"""Small reads run on the event loop only when their library is free at once.

An apply can hold a library's write lock for seconds (an HNSW insert of a
large batch); a read that waited for it on the event loop would stop Raft's
heartbeats. So a read on the loop never waits: it tries the lock and, when a
writer holds it or waits for it, moves to a worker thread.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import numpy as np
import pytest

from node import models, service
from node.store.library import Library
from node.store.records import LibraryInfo
from node.store.rwlock import LockBusy, RWLock


def reader(lock: RWLock) -> str:
    with lock.read(blocking=not service._ON_LOOP.get()):
        return threading.current_thread().name


def hold_write(lock: RWLock, seconds: float, held: threading.Event) -> threading.Thread:
    def run() -> None:
        with lock.write():
            held.set()
            time.sleep(seconds)

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def test_a_non_blocking_read_refuses_while_a_writer_holds_or_waits() -> None:
    lock = RWLock()
    with lock.read(blocking=False):
        pass
    held = threading.Event()
    writer = hold_write(lock, 0.3, held)
    held.wait(5)
    with pytest.raises(LockBusy), lock.read(blocking=False):
        pass
    writer.join()
    # a writer waiting behind a reader also turns non-blocking readers away
    with lock.read():
        waiting = hold_write(lock, 0.0, threading.Event())
        deadline = time.monotonic() + 5
        while not lock._writers_waiting and time.monotonic() < deadline:
            time.sleep(0.005)
        with pytest.raises(LockBusy), lock.read(blocking=False):
            pass
    waiting.join()


def test_read_soon_runs_on_the_loop_when_free_and_moves_off_it_when_busy() -> None:
    lock = RWLock()

    async def scenario() -> tuple[str, str, str, int]:
        loop_thread = threading.current_thread().name
        free = await service.read_soon(reader, lock)
        held = threading.Event()
        writer = hold_write(lock, 0.4, held)
        await asyncio.to_thread(held.wait, 5)
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        ticking = asyncio.create_task(ticker())
        busy = await service.read_soon(reader, lock)
        ticking.cancel()
        writer.join()
        return loop_thread, free, busy, ticks

    loop_thread, free, busy, ticks = asyncio.run(scenario())
    assert free == loop_thread
    assert busy != loop_thread
    assert ticks >= 10, "the event loop stalled while the read waited for the writer"


def library_with(index_type: str, rows: int, dim: int) -> Library:
    library = Library(LibraryInfo("lib", "lib", None, dim, "l2", index_type, {}, "m", 0, 0, 1))
    assert library.store is not None
    vectors = np.random.default_rng(3).random((rows, dim), dtype=np.float32)
    library.store.put(np.arange(rows, dtype=np.int64), vectors)
    return library


def query(**fields: Any) -> models.QueryRequest:
    return models.QueryRequest.model_validate({"k": 10, "query_embedding": [0.0] * 4, **fields})


def test_only_a_bounded_query_is_answered_on_the_event_loop() -> None:
    small = library_with("brute_force", 100, 4)
    assert service.query_is_small(small, query())
    # a text to embed may wait on a model or the network: never on the loop
    assert not service.query_is_small(small, query(query_embedding=None, query_text="whales"))
    rows = service.INLINE_QUERY_FLOATS // 4 + 1
    for index_type in ("brute_force", "lsh", "kd_tree"):  # may scan every row
        assert not service.query_is_small(library_with(index_type, rows, 4), query())
    hnsw = library_with("hnsw", rows, 4)
    assert service.query_is_small(hnsw, query())
    assert service.query_is_small(hnsw, query(search_params={"ef": 100}))
    # a filter builds a mask over every row; a wide ef walks far
    assert not service.query_is_small(hnsw, query(filters={"field": "author", "op": "eq",
                                                           "value": "x"}))  # fmt: skip
    assert not service.query_is_small(hnsw, query(search_params={"ef": 4000}))
