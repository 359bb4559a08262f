"""The state digest `/cluster` shows: recomputed only when the state changed,
and only when that is cheap, unless the caller asks for it.

Hashing the state costs time proportional to it (about 0.7 s per 100,000
chunks on a shared core), and `/cluster` is what the SDK, the question
workflow and operators poll. So a poll pays for a new digest only while the
last one took at most ``INLINE_BUDGET``; past that, it shows the newest
digest with the index it was taken at, and a caller that wants the digest
of the state as it is now asks for it (``/cluster?digest=now``).

A digest is taken with the applier held, so it is the digest of one applied
index, never of a state half way through an entry.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager

from node.store.digest import state_digest
from node.store.state import StateMachine

# A poll may spend this much on a new digest (the applier waits meanwhile).
INLINE_BUDGET = 0.1
# What one chunk is taken to cost at least (measured costs can only raise it:
# a digest of a few chunks says little about one of a million).
SECONDS_PER_CHUNK = 8e-6


class DigestCache:
    def __init__(
        self, state: StateMachine, hold_applier: Callable[[], AbstractContextManager[object]]
    ) -> None:
        self._state = state
        self._hold_applier = hold_applier
        self._computing = threading.Lock()
        self._newest: tuple[int, str] | None = None
        self._per_chunk = SECONDS_PER_CHUNK

    def forget(self) -> None:
        """The state was replaced (a snapshot installed): nothing cached holds."""
        self._newest = None

    def view(self, now: bool = False) -> tuple[int, str] | None:
        """(index, digest) of the applied state: current when it is cheap or
        ``now`` is asked; otherwise the newest one taken (None before any)."""
        newest = self._newest
        if newest is not None and newest[0] == self._state.applied_index:
            return newest
        if not now and self._expected_cost() > INLINE_BUDGET:
            return newest
        with self._computing:  # one at a time; those waiting take its result
            newest = self._newest
            with self._hold_applier():
                index = self._state.applied_index
                if newest is not None and newest[0] == index:
                    return newest
                chunks = self._chunks()
                started = time.perf_counter()
                digest = state_digest(self._state)
            if chunks >= 1000:
                self._per_chunk = max(SECONDS_PER_CHUNK, (time.perf_counter() - started) / chunks)
            self._newest = (index, digest)
            return self._newest

    def _expected_cost(self) -> float:
        return self._chunks() * self._per_chunk

    def _chunks(self) -> int:
        return sum(len(library.chunks) for library in list(self._state.libraries.values()))
