"""The follower's side of a snapshot transfer: chunks into one file, in order.

One transfer at a time: a chunk at offset 0 of a new transfer replaces the
one under way (the leader gave up on it, or a new leader started over); any
other chunk must continue the current transfer exactly where it stopped.
While a received snapshot is being installed no new transfer starts (the
leader backs off and asks again; by then it may need none). File names are
made from numbers only, so nothing the sender says reaches the file system.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path

INCOMING_NAME = "incoming.part"


class ChunkOutOfOrder(Exception):
    """A chunk that does not continue the transfer under way."""


@dataclass(frozen=True, slots=True)
class TransferKey:
    leader: str
    leader_term: int
    index: int
    term: int
    rpc: int


class SnapshotInbox:
    def __init__(self, directory: Path) -> None:
        self.path = directory / INCOMING_NAME
        self._lock = threading.Lock()
        self._current: TransferKey | None = None
        self._received = 0
        self.installing: TransferKey | None = None
        self.path.unlink(missing_ok=True)  # a transfer cut by a restart is useless

    def write(self, key: TransferKey, offset: int, data: bytes) -> None:
        """Blocking; run it on a worker thread."""
        with self._lock:
            if self.installing is not None and key != self._current:
                raise ChunkOutOfOrder("a snapshot received earlier is being installed")
            if offset == 0 and key != self._current:
                self._current, self._received = key, 0
                self.path.unlink(missing_ok=True)
            if key != self._current:
                raise ChunkOutOfOrder("another snapshot transfer replaced this one")
            if offset != self._received:
                raise ChunkOutOfOrder(
                    f"expected the chunk at byte {self._received}, got one at byte {offset}"
                )
            flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if offset == 0 else 0)
            fd = os.open(self.path, flags, 0o644)
            try:
                view = memoryview(data)
                position = offset
                while view:
                    written = os.pwrite(fd, view, position)
                    view, position = view[written:], position + written
            finally:
                os.close(fd)
            self._received = offset + len(data)

    def finish(self, key: TransferKey) -> Path:
        """The last chunk arrived: make the file durable and hand it over.

        Blocking; run it on a worker thread.
        """
        with self._lock:
            if key != self._current:
                raise ChunkOutOfOrder("another snapshot transfer replaced this one")
            fd = os.open(self.path, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
            self._current, self._received = None, 0
            name = f"incoming-{key.index}-{key.term}-{key.leader_term}-{key.rpc}.taken"
            taken = self.path.with_name(name)
            os.replace(self.path, taken)
            self.installing = key
            return taken

    def installed(self, key: TransferKey) -> None:
        """The install of ``key`` ended (done, refused or failed)."""
        with self._lock:
            if self.installing == key:
                self.installing = None
