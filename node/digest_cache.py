"""The state digest `/cluster` shows: recomputed only when the state changed,
and only when that is cheap, unless the caller asks for it.

Hashing the state costs time proportional to it (about 0.7 s per 100,000
chunks on a shared core), and `/cluster` is what the SDK, the question
workflow and operators poll. So a poll pays for a new digest only while the
last one took at most ``INLINE_BUDGET``, at most a tenth of the time, and
only if the applier is free at once; otherwise it shows the newest digest
with the index it was taken at, and a caller that wants the digest of the
state as it is now asks for it (``/cluster?digest=now``).

A digest is taken with the applier held, so it is the digest of one applied
index, never of a state half way through an entry.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from node.store.digest import state_digest
from node.store.state import StateMachine

# A poll may spend this much on a new digest (the applier waits meanwhile).
INLINE_BUDGET = 0.1
# ... and wait this long for the applier to be free, or show the newest.
APPLIER_WAIT = 0.02
# Polls spend at most this share of the time on digests.
DUTY = 0.1
# What one record (chunk, document, remembered write) is taken to cost at
# least; measured costs can only raise it.
SECONDS_PER_RECORD = 8e-6


class DigestCache:
    def __init__(self, state: StateMachine, applier_lock: Callable[[], threading.Lock]) -> None:
        self._state = state
        self._applier_lock = applier_lock
        self._computing = threading.Lock()
        self._newest: tuple[int, str] | None = None
        self._per_record = SECONDS_PER_RECORD
        self._not_before = 0.0  # monotonic time before which polls do not hash
        self._generation = 0  # moves when the state is replaced

    def forget(self) -> None:
        """The state was replaced (a snapshot installed): nothing cached holds."""
        self._generation += 1
        self._newest = None

    def at(self, index: int) -> str | None:
        """The digest already taken at ``index``, if that is the newest."""
        newest = self._newest
        return newest[1] if newest is not None and newest[0] == index else None

    def view(self, now: bool = False) -> tuple[int, str] | None:
        """(index, digest) of the applied state: current when it is cheap or
        ``now`` is asked; otherwise the newest one taken (None before any)."""
        newest = self._newest
        if newest is not None and newest[0] == self._state.applied_index:
            return newest
        if not now and (
            self._records() * self._per_record > INLINE_BUDGET
            or time.monotonic() < self._not_before
        ):
            return newest
        with self._computing:  # one at a time; those waiting take its result
            generation = self._generation
            lock = self._applier_lock()
            if not lock.acquire(timeout=-1 if now else APPLIER_WAIT):
                return self._newest
            try:
                index = self._state.applied_index
                newest = self._newest
                if newest is not None and newest[0] == index:
                    return newest
                records = self._records()
                started = time.perf_counter()
                digest = state_digest(self._state)
                took = time.perf_counter() - started
            finally:
                lock.release()
            if records >= 1000:
                self._per_record = max(SECONDS_PER_RECORD, took / records)
            self._not_before = time.monotonic() + took * (1 / DUTY - 1)
            if generation != self._generation:  # replaced meanwhile
                return (index, digest)
            self._newest = (index, digest)
            return self._newest

    def _records(self) -> int:
        libraries = list(self._state.libraries.values())
        held = sum(len(library.chunks) + len(library.documents) for library in libraries)
        return held + len(self._state.requests)
