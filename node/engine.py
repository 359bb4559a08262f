"""The node's data directory brought to life: recovery, the log, snapshots.

Layout of ``data_dir``: ``LOCK`` (one process at a time), ``term`` (term and
vote), ``wal/`` (log segments), ``snapshots/``.

Recovery is replay: load the newest valid snapshot, then apply every log
entry after it. Snapshots are taken on the log thread (a cheap copy) and
written on a background thread; afterwards the log is compacted up to the
*previous* snapshot, so one damaged snapshot still leaves a way back.
"""

from __future__ import annotations

import fcntl
import logging
import os
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass
from typing import IO

from node.settings import Settings
from node.store.digest import state_digest
from node.store.snapshot_codec import FORMAT, Image, capture, restore
from node.store.state import StateMachine
from replication.interfaces import Committed
from replication.solo import SoloReplicator
from wal import CorruptLog, FileLogStore, SnapshotInfo, SnapshotStore, StableStore

log = logging.getLogger("shoal.engine")

KEEP_SNAPSHOTS = 2
REPLAY_BATCH = 512


class DataDirInUse(Exception):
    pass


@dataclass
class RecoveryReport:
    snapshot_index: int
    replayed: int
    torn_bytes_cut: int
    seconds: float


class Engine:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.data_dir = settings.data_dir
        self.state = StateMachine()
        self.log_store = FileLogStore(self.data_dir / "wal", settings.segment_bytes)
        self.stable = StableStore(self.data_dir / "term")
        self.snapshots = SnapshotStore(self.data_dir / "snapshots")
        self.replicator: SoloReplicator | None = None
        self.recovery: RecoveryReport | None = None
        self.last_snapshot: SnapshotInfo | None = None
        self._lock_file: IO[bytes] | None = None
        self._snapshot_running = threading.Lock()
        self._bytes_at_snapshot = 0
        self._digest: tuple[int, str] | None = None
        self._ready = False

    # ---------------------------------------------------------- lifecycle
    def open(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._lock_data_dir()
        started = time.perf_counter()
        self.stable.load()
        snapshot_index, snapshot_term = self._restore_snapshot()
        report = self.log_store.open(start_index=snapshot_index + 1, prev_term=snapshot_term)
        if self.log_store.last_index() < snapshot_index:
            self.log_store.reset(snapshot_index + 1, snapshot_term)
        if self.log_store.first_index() > snapshot_index + 1:
            raise CorruptLog(
                f"the log starts at entry {self.log_store.first_index()} but the newest usable "
                f"snapshot ends at {snapshot_index}; the entries between are missing"
            )
        replayed = self._replay(snapshot_index)
        self.recovery = RecoveryReport(
            snapshot_index, replayed, report.torn_bytes_cut, time.perf_counter() - started
        )
        log.info(
            "recovered: snapshot at %d, %d entries replayed, %d torn bytes cut, %.2fs",
            snapshot_index,
            replayed,
            report.torn_bytes_cut,
            self.recovery.seconds,
        )
        self.replicator = SoloReplicator(
            self.settings.node_id,
            self.log_store,
            self.stable,
            self.state,
            self.settings.fsync,
            after_apply=self._maybe_snapshot,
        )
        self.replicator.start()
        self._ready = True

    def close(self) -> None:
        self._ready = False
        # Holding the snapshot lock lets a snapshot being written finish and
        # keeps a new one from starting while the log thread stops.
        with self._snapshot_running:
            if self.replicator is not None:
                self.replicator.stop()
            self.log_store.close()
        if self._lock_file is not None:
            self._lock_file.close()
            self._lock_file = None

    @property
    def ready(self) -> bool:
        return self._ready and self.failure is None

    @property
    def failure(self) -> str | None:
        return self.replicator.failure if self.replicator is not None else None

    def _lock_data_dir(self) -> None:
        handle = open(self.data_dir / "LOCK", "ab")  # noqa: SIM115 - held for the node's life
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            raise DataDirInUse(
                f"data directory {self.data_dir} is in use by another Shoal process"
            ) from None
        handle.truncate(0)
        handle.write(f"{os.getpid()}\n".encode())
        handle.flush()
        self._lock_file = handle

    def _restore_snapshot(self) -> tuple[int, int]:
        found = self.snapshots.newest_valid()
        if found is None:
            return 0, 0
        info, meta, records = found
        if meta.get("format") != FORMAT:
            raise CorruptLog(f"snapshot {info.path.name} has unknown format {meta.get('format')}")
        restore(self.state, records, info.index, info.term)
        self.last_snapshot = info
        return info.index, info.term

    def _replay(self, after: int) -> int:
        last = self.log_store.last_index()
        index = after + 1
        while index <= last:
            hi = min(last, index + REPLAY_BATCH - 1)
            for entry in self.log_store.entries(index, hi):
                self.state.apply(entry, want_result=False)
            index = hi + 1
        return last - after

    # ------------------------------------------------------------ writing
    def propose(self, payload: bytes) -> Future[Committed]:
        assert self.replicator is not None
        return self.replicator.propose(payload)

    # ---------------------------------------------------------- snapshots
    def _maybe_snapshot(self, commit_index: int) -> None:
        """Runs on the log thread after each applied batch."""
        since = commit_index - (self.last_snapshot.index if self.last_snapshot else 0)
        grown = self.log_store.bytes_written - self._bytes_at_snapshot
        if since < self.settings.snapshot_every_entries and grown < (
            self.settings.snapshot_every_bytes
        ):
            return
        if not self._snapshot_running.acquire(blocking=False):
            return
        image = capture(self.state)
        self._bytes_at_snapshot = self.log_store.bytes_written
        threading.Thread(
            target=self._write_snapshot_then_release, args=(image,), name="shoal-snapshot"
        ).start()

    def _write_snapshot_then_release(self, image: Image) -> None:
        try:
            self._write_snapshot(image)
        except Exception:
            log.exception("snapshot at entry %d failed", image.index)
        finally:
            self._snapshot_running.release()

    def _write_snapshot(self, image: Image) -> SnapshotInfo:
        started = time.perf_counter()
        writer = self.snapshots.begin(image.index, image.term, {"format": FORMAT})
        try:
            image.write(writer)
            info = writer.commit()
        except BaseException:
            writer.abort()
            raise
        kept = self.snapshots.prune(KEEP_SNAPSHOTS)
        self.last_snapshot = info
        if len(kept) == KEEP_SNAPSHOTS and self.replicator is not None:
            # Entries up to the older kept snapshot are covered twice over.
            self.replicator.run_on_log_thread(
                lambda: self.log_store.compact_until(kept[-1].index)
            ).result()
        log.info("snapshot at entry %d written in %.2fs", info.index, time.perf_counter() - started)
        return info

    def snapshot_now(self) -> SnapshotInfo:
        """Take a snapshot of the current state and wait until it is on disk."""
        assert self.replicator is not None
        with self._snapshot_running:
            image: Image = self.replicator.run_on_log_thread(lambda: capture(self.state)).result()
            self._bytes_at_snapshot = self.log_store.bytes_written
            if self.last_snapshot is not None and self.last_snapshot.index == image.index:
                return self.last_snapshot
            return self._write_snapshot(image)

    # -------------------------------------------------------------- status
    def digest(self) -> tuple[int, str]:
        """(applied index, state digest), recomputed only when state changed."""
        for _ in range(5):
            before = self.state.applied_index
            cached = self._digest
            if cached is not None and cached[0] == before:
                return cached
            digest = state_digest(self.state)
            if self.state.applied_index == before:
                self._digest = (before, digest)
                return self._digest
        return self.state.applied_index, digest
