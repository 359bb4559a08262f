"""What replication needs from the node, and what it gives back."""

from __future__ import annotations

from concurrent.futures import Future
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from wal import LogEntry


class FsyncPolicy(StrEnum):
    """When appended entries are forced to disk before they count as durable.

    ``always``: every entry is fsynced before it is acknowledged; entries
    that arrive while a sync is running share the next one (group commit),
    which changes when an entry is synced, never whether.
    ``batch``: the same as ``always`` (it once meant group commit when
    ``always`` synced each entry alone); kept so existing settings work.
    ``off``: entries are handed to the OS and acknowledged; they survive a
    process crash but not a power loss.
    """

    ALWAYS = "always"
    BATCH = "batch"
    OFF = "off"


class Applier(Protocol):
    applied_index: int

    def apply(self, entry: LogEntry, want_result: bool = True) -> object:
        """Deterministic; never raises for a bad command."""


@dataclass(frozen=True, slots=True)
class Committed:
    """A proposal that is durable, committed and applied."""

    index: int
    term: int
    outcome: object


class NotAccepting(Exception):
    """The log is not taking proposals (stopped, failed, or not the leader)."""


class Consensus(Protocol):
    node_id: str

    def propose(self, payload: bytes) -> Future[Committed]: ...

    @property
    def term(self) -> int: ...

    @property
    def commit_index(self) -> int: ...

    @property
    def last_index(self) -> int: ...

    @property
    def failure(self) -> str | None:
        """Why this node stopped accepting writes, or None."""
