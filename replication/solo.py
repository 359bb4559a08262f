"""A cluster of one: an entry is committed once it is durable on this disk.

One thread owns the log. It takes every proposal waiting in its queue,
appends them, syncs as the fsync policy says, applies them in order and only
then completes their futures. With ``batch`` the proposals that queue up
during one fsync share the next (group commit). Other work on the log
(compaction after a snapshot) is queued to the same thread, so the log store
is never touched by two threads.

A failed write or fsync is not retried: after an fsync error the kernel may
have dropped the dirty pages, so the node stops accepting writes and says
why; a restart recovers from what is really on disk.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, InvalidStateError
from dataclasses import dataclass
from typing import Any

from replication.interfaces import Applier, Committed, FsyncPolicy, NotAccepting
from wal import EntryKind, FileLogStore, LogEntry, StableStore

log = logging.getLogger("shoal.replication")

MAX_BATCH = 4096


def _settle(future: Future[Any], result: Any = None, error: BaseException | None = None) -> None:
    """Complete a future unless its waiter already gave up (cancelled it)."""
    if future.done():
        return
    try:
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)
    except InvalidStateError:  # cancelled between the check and the set
        pass


@dataclass
class _Proposal:
    payload: bytes
    future: Future[Committed]


@dataclass
class _Task:
    fn: Callable[[], Any]
    future: Future[Any]


_STOP = object()


@dataclass
class LogStats:
    entries: int = 0
    batches: int = 0
    fsyncs: int = 0
    fsync_seconds: float = 0.0
    append_seconds: float = 0.0
    apply_seconds: float = 0.0


class SoloReplicator:
    def __init__(
        self,
        node_id: str,
        log_store: FileLogStore,
        stable: StableStore,
        applier: Applier,
        fsync: FsyncPolicy = FsyncPolicy.ALWAYS,
        after_apply: Callable[[int], None] | None = None,
    ) -> None:
        self.node_id = node_id
        self._log = log_store
        self._stable = stable
        self._applier = applier
        self._fsync = fsync
        self._after_apply = after_apply
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._commit_index = applier.applied_index
        self._failure: str | None = None
        self._accepting = False
        self.stats = LogStats()

    # ------------------------------------------------------------- status
    @property
    def term(self) -> int:
        return self._stable.value.term

    @property
    def commit_index(self) -> int:
        return self._commit_index

    @property
    def last_index(self) -> int:
        return self._commit_index

    @property
    def failure(self) -> str | None:
        return self._failure

    # ---------------------------------------------------------- lifecycle
    def start(self) -> None:
        """Lead a new term: persist it, log a no-op, start the log thread."""
        term = max(self._stable.value.term, self._log.last_term()) + 1
        self._stable.save(term, self.node_id)
        self._thread = threading.Thread(target=self._run, name="shoal-log", daemon=True)
        self._thread.start()
        self._accepting = True
        noop: Future[Committed] = Future()
        self._queue.put(_Proposal(b"", noop))
        noop.result(timeout=60)

    def stop(self, timeout: float = 30.0) -> None:
        """Finish what is queued, then stop the log thread."""
        self._accepting = False
        if self._thread is not None:
            self._queue.put(_STOP)
            self._thread.join(timeout)
            self._thread = None
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if isinstance(item, (_Proposal, _Task)):
                _settle(item.future, error=NotAccepting("the node is shutting down"))

    # ------------------------------------------------------------ requests
    def propose(self, payload: bytes) -> Future[Committed]:
        future: Future[Committed] = Future()
        if self._failure is not None:
            _settle(future, error=NotAccepting(self._failure))
        elif not self._accepting:
            _settle(future, error=NotAccepting("the node is shutting down"))
        else:
            self._queue.put(_Proposal(payload, future))
        return future

    def run_on_log_thread(self, fn: Callable[[], Any]) -> Future[Any]:
        future: Future[Any] = Future()
        self._queue.put(_Task(fn, future))
        return future

    # --------------------------------------------------------- log thread
    def _run(self) -> None:
        stopping = False
        while not stopping:
            items = [self._queue.get()]
            while len(items) < MAX_BATCH:
                try:
                    items.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            proposals: list[_Proposal] = []
            for item in items:
                if item is _STOP:
                    stopping = True
                elif isinstance(item, _Task):
                    self._commit(proposals)
                    proposals = []
                    self._run_task(item)
                else:
                    proposals.append(item)
            self._commit(proposals)

    @staticmethod
    def _run_task(task: _Task) -> None:
        try:
            result = task.fn()
        except Exception as exc:  # the caller sees the error on its future
            _settle(task.future, error=exc)
        else:
            _settle(task.future, result)

    def _commit(self, proposals: list[_Proposal]) -> None:
        if not proposals:
            return
        if self._failure is not None:
            for proposal in proposals:
                _settle(proposal.future, error=NotAccepting(self._failure))
            return
        term = self.term
        first = self._log.last_index() + 1
        entries = [
            LogEntry(
                first + n,
                term,
                EntryKind.COMMAND if proposal.payload else EntryKind.NOOP,
                proposal.payload,
            )
            for n, proposal in enumerate(proposals)
        ]
        try:
            self._write(entries)
        except OSError as exc:
            self._failure = f"the write-ahead log could not be written: {exc}"
            log.critical("%s; refusing further writes until restart", self._failure)
            for proposal in proposals:
                _settle(proposal.future, error=NotAccepting(self._failure))
            return
        self._commit_index = entries[-1].index
        self.stats.entries += len(entries)
        self.stats.batches += 1
        started = time.perf_counter()
        for entry, proposal in zip(entries, proposals, strict=True):
            try:
                outcome = self._applier.apply(entry)
            except Exception as exc:
                self._failure = f"applying entry {entry.index} failed: {exc!r}"
                log.critical("%s; refusing further writes until restart", self._failure)
                _settle(proposal.future, error=NotAccepting(self._failure))
                continue
            _settle(proposal.future, Committed(entry.index, entry.term, outcome))
        self.stats.apply_seconds += time.perf_counter() - started
        if self._after_apply is not None:
            self._after_apply(self._commit_index)

    def _write(self, entries: list[LogEntry]) -> None:
        if self._fsync is FsyncPolicy.ALWAYS:
            for entry in entries:
                self._append([entry])
                self._sync()
            return
        self._append(entries)
        if self._fsync is FsyncPolicy.BATCH:
            self._sync()

    def _append(self, entries: list[LogEntry]) -> None:
        started = time.perf_counter()
        self._log.append(entries)
        self.stats.append_seconds += time.perf_counter() - started

    def _sync(self) -> None:
        started = time.perf_counter()
        self._log.sync()
        self.stats.fsyncs += 1
        self.stats.fsync_seconds += time.perf_counter() - started
