"""A phase-fair readers-writer lock for threads.

Many searches may read a library at once; applying a command takes the lock
alone. A waiting writer stops new readers from entering (so a stream of
searches cannot starve the applier), and when a writer leaves, the readers
that were already waiting go before the next writer (so back-to-back writes
cannot starve searches).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager


class LockBusy(Exception):
    """A non-blocking read found a writer holding or waiting for the lock."""


class RWLock:
    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._readers = 0
        self._readers_waiting = 0
        self._readers_turn = False
        self._writer = False
        self._writers_waiting = 0

    @contextmanager
    def read(self, blocking: bool = True) -> Iterator[None]:
        """Hold the lock shared. Not ``blocking``: raise :class:`LockBusy`
        instead of waiting (for callers on the event loop)."""
        with self._cond:
            if not blocking and (self._writer or self._writers_waiting):
                raise LockBusy
            self._readers_waiting += 1
            try:
                while self._writer or (self._writers_waiting and not self._readers_turn):
                    self._cond.wait()
            finally:
                self._readers_waiting -= 1
                if self._readers_waiting == 0 and self._readers_turn:
                    self._readers_turn = False
                    self._cond.notify_all()
            self._readers += 1
        try:
            yield
        finally:
            with self._cond:
                self._readers -= 1
                if self._readers == 0:
                    self._cond.notify_all()

    @contextmanager
    def write(self) -> Iterator[None]:
        with self._cond:
            self._writers_waiting += 1
            try:
                while self._writer or self._readers or self._readers_turn:
                    self._cond.wait()
            finally:
                self._writers_waiting -= 1
            self._writer = True
        try:
            yield
        finally:
            with self._cond:
                self._writer = False
                self._readers_turn = self._readers_waiting > 0
                self._cond.notify_all()
