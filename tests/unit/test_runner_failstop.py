"""The runner is fail-stop: a failed applier, commit hook or loop stops the
node from leading and answers everyone waiting, at once."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from replication.interfaces import FsyncPolicy, NotAccepting
from replication.raft import RaftConfig, Role
from replication.runner import OutcomeUnknown, RaftNode
from wal import FileLogStore, LogEntry, StableStore


class Applier:
    def __init__(self, fail_at: int = 0) -> None:
        self.applied_index = 0
        self.fail_at = fail_at

    def apply(self, entry: LogEntry, want_result: bool = True) -> object:
        if entry.index == self.fail_at:
            raise RuntimeError("the applier broke")
        self.applied_index = entry.index
        return None


def _node(tmp_path: Path, applier: Applier, after_apply: object = None) -> RaftNode:
    log = FileLogStore(tmp_path / "wal")
    log.open()
    stable = StableStore(tmp_path / "term")
    stable.load()
    return RaftNode(
        RaftConfig("n1", ()), log, stable, applier, None, FsyncPolicy.BATCH,
        lambda: None, after_apply=after_apply,  # type: ignore[arg-type]
    )  # fmt: skip


async def _leading(node: RaftNode) -> None:
    await node.start()
    for _ in range(200):
        if node.is_leader:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("a cluster of one did not lead")


async def _failed(node: RaftNode) -> None:
    for _ in range(200):
        if node.failure is not None:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the node did not fail")


def test_failed_applier_stops_leading_and_answers_waiters(tmp_path: Path) -> None:
    async def scenario() -> None:
        node = _node(tmp_path, Applier(fail_at=3))  # entry 1 is the leader's no-op
        failures: list[str] = []
        node.on_failure = failures.append
        await _leading(node)
        assert (await node.propose(b"first")).index == 2
        waiter = asyncio.ensure_future(node.wait_applied(50, timeout=30))
        with pytest.raises(OutcomeUnknown):
            await asyncio.wait_for(node.propose(b"poison"), 5)
        await _failed(node)
        assert node.role is not Role.LEADER and node.leader_id is None
        with pytest.raises(NotAccepting):
            await asyncio.wait_for(waiter, 1)  # answered at once, not after 30 s
        with pytest.raises(NotAccepting):
            await node.propose(b"after")
        with pytest.raises(NotAccepting):
            await node.read_index()
        assert len(failures) == 1 and "applying entry 3" in failures[0]
        await node.stop()

    asyncio.run(scenario())


def test_failed_commit_hook_fails_the_node(tmp_path: Path) -> None:
    def hook(applied: int) -> None:
        if applied >= 2:
            raise OSError(28, "No space left on device")

    async def scenario() -> None:
        node = _node(tmp_path, Applier(), after_apply=hook)
        await _leading(node)
        await node.propose(b"x")
        await _failed(node)
        assert "No space left" in (node.failure or "")
        assert node.role is not Role.LEADER
        await node.stop()

    asyncio.run(scenario())


def test_unexpected_error_in_the_raft_loop_fails_the_node(tmp_path: Path) -> None:
    async def scenario() -> None:
        node = _node(tmp_path, Applier())
        await _leading(node)
        assert node.core is not None

        def broken(now: float) -> None:
            raise KeyError("a bug")

        node.core.tick = broken  # type: ignore[method-assign]
        await _failed(node)
        assert "raft loop failed" in (node.failure or "")
        assert node.core.halted
        await node.stop()

    asyncio.run(scenario())


def test_disk_error_while_installing_a_snapshot_fails_the_node(tmp_path: Path) -> None:
    from replication.messages import SnapshotRequest

    log = FileLogStore(tmp_path / "wal")
    log.open()
    stable = StableStore(tmp_path / "term")
    stable.load()
    config = RaftConfig("n1", ("n2", "n3"), election_timeout=(100.0, 200.0))
    node = RaftNode(config, log, stable, Applier(), None, FsyncPolicy.BATCH, lambda: None)

    def commit(prepared: object) -> None:
        raise OSError(5, "Input/output error")

    async def scenario() -> None:
        failures: list[str] = []
        node.on_failure = failures.append
        await node.start()
        offer = SnapshotRequest(1, "n2", 10, 1, 7)
        with pytest.raises(NotAccepting):
            await node.install_snapshot(offer, lambda: "state", commit, lambda _: None)
        await _failed(node)
        assert failures and "Input/output error" in failures[0]
        await node.stop()

    asyncio.run(scenario())


def test_a_failed_apply_is_marked_under_the_applier_lock(tmp_path: Path) -> None:
    """Whoever takes the applier lock after a failed apply (a snapshot) can
    tell, before the loop has even heard of the failure: the state may hold
    part of that entry."""

    async def scenario() -> None:
        node = _node(tmp_path, Applier(fail_at=3))
        await _leading(node)
        assert not node.applier_failed
        await node.propose(b"first")
        with pytest.raises(OutcomeUnknown):
            await asyncio.wait_for(node.propose(b"poison"), 5)
        with node.applying_lock:
            assert node.applier_failed
        await node.stop()

    asyncio.run(scenario())


def test_chores_after_or_during_stop_are_refused_not_left_waiting(tmp_path: Path) -> None:
    """A chore (e.g. compaction after a snapshot, asked for from a worker
    thread) queued when the loop stops, or asked for afterwards, gets
    NotAccepting at once instead of waiting for a loop that will not run."""

    async def scenario() -> None:
        node = _node(tmp_path, Applier())
        await _leading(node)
        ran: list[int] = []

        async def chore() -> int:
            ran.append(1)
            return 1

        assert await node.run_on_loop(chore) == 1
        node._running = False  # the loop ends after its current batch
        node._events.put_nowait("tick")  # wake it so it notices
        await asyncio.sleep(0.05)
        queued = asyncio.ensure_future(node.run_on_loop(chore))
        await asyncio.sleep(0.05)
        assert not queued.done()  # nothing runs it: what stop() must answer
        await node.stop()
        with pytest.raises(NotAccepting):
            await asyncio.wait_for(queued, 1)
        with pytest.raises(NotAccepting):
            await asyncio.wait_for(node.run_on_loop(chore), 1)
        assert ran == [1]

    asyncio.run(scenario())


def test_a_cancelled_wait_for_the_applier_lock_does_not_keep_it(tmp_path: Path) -> None:
    """A snapshot install waiting for the applier lock when the node stops:
    the thread that gets the lock after the wait was cancelled gives it back
    (it was held for ever, and the next snapshot or close() hung)."""

    async def scenario() -> None:
        node = _node(tmp_path, Applier())
        node.applying_lock.acquire()  # the applier is busy
        waiting = asyncio.ensure_future(node._take_applying_lock())
        await asyncio.sleep(0.05)
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        node.applying_lock.release()  # the applier finishes: the thread takes it...
        for _ in range(100):  # ...and lets it go again
            await asyncio.sleep(0.01)
            if node.applying_lock.acquire(blocking=False):
                node.applying_lock.release()
                return
        raise AssertionError("the applier lock stayed taken after a cancelled wait")

    asyncio.run(scenario())


def test_a_chore_running_when_the_node_stops_is_answered(tmp_path: Path) -> None:
    """Found by review: a compaction taken off the queue and waiting for the
    loop's flush when stop() cancelled the loop was never answered (its
    caller, a snapshot thread, waited out a 60 s timeout)."""

    async def scenario() -> None:
        node = _node(tmp_path, Applier())
        await _leading(node)
        started, release = asyncio.Event(), asyncio.Event()

        async def slow_chore() -> int:
            started.set()
            await release.wait()  # the loop is busy in this chore when stop() comes
            return 1

        running = asyncio.ensure_future(node.run_on_loop(slow_chore))
        await asyncio.wait_for(started.wait(), 5)
        await node.stop()
        with pytest.raises(NotAccepting):
            await asyncio.wait_for(running, 1)

    asyncio.run(scenario())


def test_a_message_far_beyond_the_nodes_term_is_refused(tmp_path: Path) -> None:
    """One message with a term no election could reach (the peer fuzzer sent
    2^62) would otherwise move the whole cluster there, where nobody
    campaigns any more: it is refused, and the node's term stays."""
    from replication.messages import MAX_TERM, MAX_TERM_STEP, AppendResponse
    from replication.runner import TermOutOfReach

    async def scenario() -> None:
        node = _node(tmp_path, Applier())
        await _leading(node)
        term = node.term
        for far in (term + MAX_TERM_STEP + 1, MAX_TERM):
            with pytest.raises(TermOutOfReach):
                await node.handle_message(AppendResponse(far, "n2", False, 0))
        assert node.term == term and node.is_leader
        near = term + MAX_TERM_STEP
        await node.handle_message(AppendResponse(near, "n2", False, 0))
        assert node.term == near  # a newer term within reach is taken, as Raft says
        await node.stop()

    asyncio.run(scenario())
