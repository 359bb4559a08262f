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

import pytest

from node import service
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
