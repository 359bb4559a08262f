"""The log on disk: framed records, segments, election state, snapshots.

Imports nothing from the rest of Shoal.
"""

from wal.log_store import CorruptLog, FileLogStore, LogGap, OpenReport
from wal.records import EntryKind, LogEntry
from wal.snapshots import CorruptSnapshot, SnapshotInfo, SnapshotStore, SnapshotWriter
from wal.stable import CorruptStableState, StableStore, TermVote

__all__ = [
    "CorruptLog",
    "CorruptSnapshot",
    "CorruptStableState",
    "EntryKind",
    "FileLogStore",
    "LogEntry",
    "LogGap",
    "OpenReport",
    "SnapshotInfo",
    "SnapshotStore",
    "SnapshotWriter",
    "StableStore",
    "TermVote",
]
