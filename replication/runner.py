"""Drives a :class:`RaftCore` on the event loop; the one owner of the log.

One task takes events (ticks, proposals, messages, reads, chores) in
batches, feeds them to the core, then makes the core's Ready durable in the
order Raft needs: term and vote, then the log (one fsync for the whole
batch: group commit), and only then sends messages and answers the RPCs it
handled. Committed entries are read from the log on the loop and handed to
an applier thread, which applies them in order and completes the proposals
waiting on them.

A proposal's future ends one of three ways: applied (with the state
machine's outcome), :class:`ProposalLost` (another entry took its index, so
it was never applied), or :class:`OutcomeUnknown` (it may still commit).
"""

from __future__ import annotations

import asyncio
import logging
import queue
import random
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from replication.gap_histogram import GapHistogram
from replication.interfaces import Applier, Committed, FsyncPolicy, NotAccepting
from replication.leader_view import HEADER as LEADER_VIEW_HEADER
from replication.leader_view import LeaderView, MemberProgress, decode_view, encode_view
from replication.membership import Configuration
from replication.messages import (
    MAX_TERM_STEP,
    AppendRequest,
    Message,
    SnapshotProgress,
    SnapshotRequest,
    Unreachable,
    VoteRequest,
)
from replication.raft import (
    CannotTransfer,
    MembershipChangeRefused,
    NotLeader,
    PeerState,
    RaftConfig,
    RaftCore,
    Ready,
    Role,
    SafetyViolation,
)
from replication.read_coalescer import ReadCoalescer
from replication.transport import HttpTransport, PeerUnreachable
from wal import FileLogStore, LogEntry, StableStore

log = logging.getLogger("shoal.raft")

TICK_SECONDS = 0.05
MAX_EVENTS = 2048
# No await on the Raft loop waits forever: an answer that does not come by
# then means the loop is stuck or failed, and the caller is told so.
LOOP_ANSWER_SECONDS = 30.0


class ProposalLost(Exception):
    """Another entry took this proposal's index: it was never applied."""


class OutcomeUnknown(Exception):
    """The proposal may or may not commit; retry with the same request id."""


@dataclass
class LogStats:
    entries: int = 0
    batches: int = 0
    fsyncs: int = 0
    fsync_seconds: float = 0.0
    apply_seconds: float = 0.0


@dataclass
class _Proposal:
    payload: bytes
    future: asyncio.Future[Committed]


@dataclass
class _Inbound:
    message: Message
    future: asyncio.Future[Message | None] | None


@dataclass
class _Read:
    future: asyncio.Future[int]


@dataclass
class _ConfigProposal:
    configuration: Configuration
    future: asyncio.Future[Committed]


@dataclass
class _Transfer:
    target: str | None
    future: asyncio.Future[str]


class TermOutOfReach(ValueError):
    """A message whose term is further ahead than elections could have got."""


class TransferFailed(Exception):
    """Leadership did not move to the target in time; this node may lead on."""


@dataclass
class _Chore:
    """Work that must run on the loop between batches (touches the log)."""

    run: Callable[[], Awaitable[Any]]
    future: asyncio.Future[Any]


class RaftNode:
    def __init__(
        self,
        config: RaftConfig,
        log_store: FileLogStore,
        stable: StableStore,
        applier: Applier,
        transport: HttpTransport | None,
        fsync: FsyncPolicy,
        newest_snapshot: Callable[[], tuple[Path, int, int] | None],
        after_apply: Callable[[int], None] | None = None,
        rng: random.Random | None = None,
        lost_tail: bool = False,
        configurations: list[tuple[int, Configuration]] | None = None,
        known_members: frozenset[str] = frozenset(),
    ) -> None:
        self.config = config
        self.configurations = configurations or None
        self.known_members = known_members
        self.lost_tail = lost_tail
        self.node_id = config.node_id
        self.log_store = log_store
        self.stable = stable
        self.applier = applier
        self.transport = transport
        self.fsync = fsync
        self.newest_snapshot = newest_snapshot
        self.after_apply = after_apply
        self.rng = rng
        self.stats = LogStats()
        self.core: RaftCore | None = None
        self.failure: str | None = None
        # Set under applying_lock when an apply failed (the state may hold
        # part of that entry): whoever takes the lock next must not read the
        # state as of applied_index, e.g. to snapshot it.
        self.applier_failed = False
        self._stopped = False
        self.applied_index = applier.applied_index
        self._events: asyncio.Queue[Any] = asyncio.Queue()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._proposals: dict[int, tuple[int, asyncio.Future[Committed]]] = {}
        self._reads: dict[int, asyncio.Future[int]] = {}
        self._read_ids = 0
        self._handed = applier.applied_index
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []
        # (entries, indexes whose proposer waits for a result)
        self._apply_queue: queue.SimpleQueue[tuple[list[LogEntry], set[int]] | None] = (
            queue.SimpleQueue()
        )
        self._apply_thread: threading.Thread | None = None
        self.applying_lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._running = False
        self.last_contact: dict[str, float] = {}
        # Followers: the newest progress summary from the leader, as
        # (leader, term, monotonic time received, view).
        self.heard_view: tuple[str, int, float, LeaderView] | None = None
        self._view_header: tuple[float, str] = (-1.0, "")
        self._view_seq = 0
        # Time between messages from the leader (followers), and how late ticks ran.
        self.leader_gaps = GapHistogram()
        self.loop_lag = GapHistogram()
        self._transfers: dict[str, asyncio.Task[None]] = {}
        # Called once, on the loop, when this node fails (see _fail).
        self.on_failure: Callable[[str], None] | None = None
        # Called once, on the loop, when a node that lost its tail may vote again.
        self.on_tail_recovered: Callable[[], None] | None = None
        # Called on the loop when the member list in force changed.
        self.on_configuration_changed: Callable[[Configuration], None] | None = None
        self._chore_future: asyncio.Future[Any] | None = None
        self._leader_reads = ReadCoalescer(self._ask_leader_for_read_index)
        # Set when the process is asked to stop: nothing new is taken on.
        self.stopping: str | None = None

    # ------------------------------------------------------------- lifecycle
    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        value = self.stable.value
        now = time.monotonic()
        self.core = RaftCore(self.config, self.log_store, value.term, value.voted_for,
                             self.applied_index, now, self.rng, self.lost_tail,
                             self.configurations, self.known_members)  # fmt: skip
        self._running = True
        self._apply_thread = threading.Thread(target=self._apply_forever, name="shoal-apply",
                                              daemon=True)  # fmt: skip
        self._apply_thread.start()
        self._spawn(self._event_loop())
        self._spawn(self._ticker())

    async def stop(self) -> None:
        self._running = False
        self._stopped = True
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        chore = self._chore_future
        if chore is not None and not chore.done():  # cancelled while it ran
            chore.set_exception(NotAccepting("the node is stopping"))
        self._apply_queue.put(None)
        if self._apply_thread is not None:
            await asyncio.to_thread(self._apply_thread.join, 30)
        for _, future in self._proposals.values():
            if not future.done():
                future.set_exception(OutcomeUnknown("the node stopped before the write finished"))
        self._fail_waiters("the node is stopping")
        if self.transport is not None:
            await self.transport.close()

    def _spawn(self, coroutine: Awaitable[Any]) -> None:
        task: asyncio.Task[Any] = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _ticker(self) -> None:
        while self._running:
            slept_from = time.monotonic()
            await asyncio.sleep(TICK_SECONDS)
            self.loop_lag.observe(max(0.0, time.monotonic() - slept_from - TICK_SECONDS))
            self._events.put_nowait("tick")

    # --------------------------------------------------------------- status
    @property
    def role(self) -> Role:
        return self.core.role if self.core else Role.FOLLOWER

    @property
    def term(self) -> int:
        return self.core.term if self.core else self.stable.value.term

    @property
    def leader_id(self) -> str | None:
        return self.core.leader_id if self.core else None

    @property
    def commit_index(self) -> int:
        return self.core.commit_index if self.core else self.applied_index

    @property
    def is_leader(self) -> bool:
        return self.role is Role.LEADER

    # ------------------------------------------------------------- requests
    async def propose(self, payload: bytes) -> Committed:
        self._check_accepting()
        future: asyncio.Future[Committed] = asyncio.get_running_loop().create_future()
        self._events.put_nowait(_Proposal(payload, future))
        return await future

    async def handle_message(self, message: Message) -> Message | None:
        """An RPC from a peer; the answer leaves only after it is durable.
        Raises TermOutOfReach for a term no election could have reached."""
        if self.failure is not None:
            raise NotAccepting(self.failure)
        core = self.core
        if core is not None and message.term > core.term + MAX_TERM_STEP:
            raise TermOutOfReach(
                f"the message's term {message.term} is more than 2^32 terms beyond this "
                f"node's term {core.term}; no cluster gets there by elections"
            )
        now = time.monotonic()
        previous = self.last_contact.get(message.sender)
        if previous is not None and message.sender == self.leader_id:
            self.leader_gaps.observe(now - previous)
        self.last_contact[message.sender] = now
        future: asyncio.Future[Message | None] = asyncio.get_running_loop().create_future()
        self._events.put_nowait(_Inbound(message, future))
        answer: Message | None = await self._answer(future)
        return answer

    def leader_view(self, seq: int = 0) -> tuple[int, LeaderView] | None:
        """Leader only: (our term, how far each member's log matches ours and
        when we last heard from it). /cluster calls this off the loop: a
        view the loop deposed us during is not returned."""
        core = self.core
        if core is None or core.role is not Role.LEADER:
            return None
        term = core.term
        now = time.monotonic()
        last = core.log.last_index()
        members = []
        for member in sorted(core.members):
            if member == self.node_id:
                members.append(MemberProgress(member, last, 0))
                continue
            progress = core.progress.get(member)
            known = progress is not None and (
                progress.match_index > 0 or progress.state is not PeerState.PROBE
            )  # a new leader learns a match index from the first answer
            heard = self.last_contact.get(member)
            members.append(MemberProgress(
                member,
                progress.match_index if known and progress is not None else None,
                None if heard is None else int((now - heard) * 1000),
            ))  # fmt: skip
        if self.core is not core or core.role is not Role.LEADER or core.term != term:
            return None
        return term, LeaderView(seq, last, tuple(members))

    def note_leader_view(self, sender: str, term: int, text: str) -> None:
        """Keep the newest summary the leader of our term sent."""
        core = self.core
        if core is None or core.leader_id != sender or core.term != term:
            return
        kept = self.heard_view
        newest = kept[3].seq if kept is not None and kept[:2] == (sender, term) else -1
        seq = text.split(" ", 1)[0]
        if seq.isascii() and seq.isdigit() and len(seq) < 19 and int(seq) <= newest:
            return  # one summary rides on every append of a tick: read it once
        view = decode_view(text)
        if view is not None and view.seq > newest:
            self.heard_view = (sender, term, time.monotonic(), view)

    def _leader_view_headers(self) -> dict[str, str] | None:
        """The header each append carries, made again at most every tick."""
        made_at, text = self._view_header
        now = time.monotonic()
        if now - made_at >= TICK_SECONDS:
            self._view_seq += 1
            made = self.leader_view(self._view_seq)
            text = encode_view(made[1]) if made is not None else ""
            self._view_header = (now, text)
        return {LEADER_VIEW_HEADER: text} if text else None

    async def read_index(self) -> int:
        """Leader only: a commit index that is safe for a linearizable read."""
        self._check_accepting()
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._events.put_nowait(_Read(future))
        index: int = await self._answer(future)
        return index

    async def forwarded_read_index(self) -> int:
        """Follower: a read index from the leader, one round trip for every
        read waiting at the time (see :mod:`replication.read_coalescer`)."""
        self._check_accepting()
        return await self._leader_reads.read_index()

    async def _ask_leader_for_read_index(self) -> int:
        leader = self.leader_id
        if leader is None or leader == self.node_id or self.transport is None:
            raise NotLeader(None if leader == self.node_id else leader)
        return await self.transport.read_index(leader)

    async def transfer_leadership(self, target: str | None, timeout: float) -> str:
        """Hand leadership over (None: to the most up-to-date peer) and wait
        until a newer leader is known; returns it (normally the target; the
        target may lose its election to another up-to-date node). Raises
        NotLeader, CannotTransfer or TransferFailed (when this node leads on,
        or stepped down with no newer leader heard of yet)."""
        if self.failure is not None:
            raise NotAccepting(self.failure)
        term = self.term
        future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._events.put_nowait(_Transfer(target, future))
        chosen: str = await self._answer(future)
        if chosen == self.node_id:
            return chosen
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            leader = self.leader_id
            if self.term > term and self.role is not Role.LEADER and leader is not None:
                return leader
            if self.term == term and self.role is not Role.LEADER:
                # Stepped down in the same term: check-quorum, not a hand-over.
                raise TransferFailed("this node lost touch with a majority and stopped leading")
            if self.failure is not None:
                raise NotAccepting(self.failure)
            await asyncio.sleep(0.01)
        if self.role is Role.LEADER:
            raise TransferFailed(f"{chosen} did not take over leadership in {timeout:.1f} s")
        raise TransferFailed(f"this node stepped down, but no new leader was heard of in "
                             f"{timeout:.1f} s")  # fmt: skip

    def _check_accepting(self) -> None:
        if self.failure is not None:
            raise NotAccepting(self.failure)
        if self.stopping is not None:
            raise NotAccepting(self.stopping)

    def begin_shutdown(self, reason: str = "the node is stopping") -> None:
        """The process was asked to stop: take on no new writes or reads.

        The loop itself runs on until :meth:`stop`, so this node still
        answers its peers, and what is in flight may finish, while the
        server drains.
        """
        self.stopping = self.stopping or reason

    def abandon_waiting(self) -> None:
        """Answer everyone still waiting, at once (late in a shutdown).

        Writes in flight may still commit: their callers are told the outcome
        is unknown and to retry with their Idempotency-Key.
        """
        reason = self.stopping or "the node is stopping"
        for _, proposal in self._proposals.values():
            if not proposal.done():
                proposal.set_exception(OutcomeUnknown(reason))
        self._proposals.clear()
        for read in self._reads.values():
            if not read.done():
                read.set_exception(NotAccepting(reason))
        self._reads.clear()
        for _, waiter in self._waiters:
            if not waiter.done():
                waiter.set_exception(NotAccepting(reason))
        self._waiters.clear()

    async def _answer(self, future: asyncio.Future[Any]) -> Any:
        try:
            return await asyncio.wait_for(future, LOOP_ANSWER_SECONDS)
        except TimeoutError:
            raise NotAccepting(
                f"the raft loop did not answer in {LOOP_ANSWER_SECONDS:.0f} s"
            ) from None

    async def wait_applied(self, index: int, timeout: float) -> bool:
        if self.applied_index >= index:
            return True
        if self.failure is not None:
            raise NotAccepting(self.failure)
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        waiter = (index, future)
        self._waiters.append(waiter)
        try:
            await asyncio.wait_for(asyncio.shield(future), timeout)
            return True
        except TimeoutError:
            if waiter in self._waiters:
                self._waiters.remove(waiter)
            return False

    async def run_on_loop(self, chore: Callable[[], Awaitable[Any]]) -> Any:
        """Run ``chore`` between batches, where the log may be touched."""
        if self.failure is not None:
            raise NotAccepting(self.failure)
        if self._stopped:  # no loop will run it, and stop() answered those queued
            raise NotAccepting("the node is stopping")
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._events.put_nowait(_Chore(chore, future))
        return await future

    # ----------------------------------------------------------- event loop
    async def _event_loop(self) -> None:
        while self._running:
            # Everything that queued up meanwhile goes into one batch: one
            # append and one fsync for all its proposals (group commit).
            batch = [await self._events.get()]
            while len(batch) < MAX_EVENTS and not self._events.empty():
                batch.append(self._events.get_nowait())
            try:
                await self._process(batch)
            except asyncio.CancelledError:
                raise
            except SafetyViolation as exc:
                self._fail(f"raft safety check failed: {exc}")
                return
            except OSError as exc:
                self._fail(f"the write-ahead log could not be written: {exc}")
                return
            except Exception as exc:  # a bug: stop rather than go on in an unknown state
                log.exception("the raft loop failed")
                self._fail(f"the raft loop failed: {exc!r}")
                return

    def _fail(self, reason: str) -> None:
        """Fail-stop: this node stops leading, voting and applying for good.

        Everyone waiting is answered at once; ``on_failure`` (the process)
        decides what comes next, normally an exit so a supervisor restarts
        the node from what is on disk.
        """
        if self.failure is not None:
            return
        self.failure = reason
        self._running = False
        log.critical("%s; this node stops taking part in the cluster", reason)
        if self.core is not None:
            self.core.halt()
        for _, future in self._proposals.values():
            if not future.done():
                future.set_exception(OutcomeUnknown(reason))
        self._fail_waiters(reason)
        chore = self._chore_future
        if chore is not None and not chore.done():  # its task is cancelled below
            chore.set_exception(NotAccepting(reason))
        for task in list(self._tasks):
            if task is not asyncio.current_task():
                task.cancel()
        if self.on_failure is not None:
            self.on_failure(reason)

    def _fail_waiters(self, reason: str) -> None:
        for future in self._reads.values():
            if not future.done():
                future.set_exception(NotAccepting(reason))
        self._reads.clear()
        for _, waiter in self._waiters:
            if not waiter.done():
                waiter.set_exception(NotAccepting(reason))
        self._waiters.clear()
        while not self._events.empty():
            event = self._events.get_nowait()
            waiting: asyncio.Future[Any] | None = getattr(event, "future", None)
            if waiting is not None and not waiting.done():
                waiting.set_exception(NotAccepting(reason))

    async def _process(self, batch: list[Any]) -> None:
        assert self.core is not None
        core = self.core
        now = time.monotonic()
        answers: list[tuple[asyncio.Future[Message | None], Message | None]] = []
        for event in batch:
            if event == "tick":
                core.tick(now)
            elif isinstance(event, _Proposal):
                self._propose(event, now)
            elif isinstance(event, _Inbound):
                answer = core.receive(event.message, now)
                if event.future is not None:
                    answers.append((event.future, answer))
            elif isinstance(event, _Read):
                if self.stopping is not None:
                    event.future.set_exception(NotAccepting(self.stopping))
                    continue
                self._read_ids += 1
                try:
                    core.read_index(self._read_ids, now)
                    self._reads[self._read_ids] = event.future
                except NotLeader as exc:
                    event.future.set_exception(exc)
            elif isinstance(event, _ConfigProposal):
                self._propose_configuration(event, now)
            elif isinstance(event, _Transfer):
                try:
                    event.future.set_result(core.transfer_leadership(event.target, now))
                except (NotLeader, CannotTransfer) as exc:
                    event.future.set_exception(exc)
            elif isinstance(event, _Chore):
                await self._flush(now)
                self._chore_future = event.future
                try:
                    event.future.set_result(await event.run())
                except (OSError, SafetyViolation) as exc:
                    # The disk or a safety rule failed inside the chore: the
                    # node fails (the event loop catches this), its caller too.
                    event.future.set_exception(NotAccepting(f"{exc}"))
                    raise
                except Exception as exc:
                    event.future.set_exception(exc)
        await self._flush(now)
        for future, answer in answers:  # durable now: the answers may leave
            if not future.done():
                future.set_result(answer)
        if self.lost_tail and core.waits_for_leader_after is None:
            self.lost_tail = False
            if self.on_tail_recovered is not None:
                self.on_tail_recovered()

    def _propose_configuration(self, proposal: _ConfigProposal, now: float) -> None:
        assert self.core is not None
        refusal = self.failure or self.stopping
        if refusal is not None:
            proposal.future.set_exception(NotAccepting(refusal))
            return
        try:
            index, term = self.core.propose_configuration(proposal.configuration, now)
        except (NotLeader, MembershipChangeRefused) as exc:
            proposal.future.set_exception(exc)
            return
        self._proposals[index] = (term, proposal.future)

    async def propose_configuration(self, configuration: Configuration) -> Committed:
        """Change the member list; answered once the change is applied (so
        committed). Raises NotLeader or MembershipChangeRefused."""
        self._check_accepting()
        future: asyncio.Future[Committed] = asyncio.get_running_loop().create_future()
        self._events.put_nowait(_ConfigProposal(configuration, future))
        return await future

    def _propose(self, proposal: _Proposal, now: float) -> None:
        assert self.core is not None
        if proposal.future.done():  # its caller gave up before we got to it
            return
        refusal = self.failure or self.stopping
        if refusal is not None:
            proposal.future.set_exception(NotAccepting(refusal))
            return
        try:
            index, term = self.core.propose(proposal.payload, now)
        except NotLeader as exc:
            proposal.future.set_exception(exc)
            return
        self._proposals[index] = (term, proposal.future)

    async def _flush(self, now: float) -> None:
        assert self.core is not None
        core = self.core
        while True:
            ready = core.take_ready()
            if ready.save_term:
                await asyncio.to_thread(self.stable.save, core.term, core.voted_for)
            elif ready.messages:
                # Requests may leave before our own log is synced (Raft 10.2.1):
                # the core counts this node toward a majority only up to what
                # it has synced, and every answer to a peer still waits below.
                self._dispatch_requests(ready)
            if ready.sync_log:
                if self.fsync is not FsyncPolicy.OFF:
                    started = time.perf_counter()
                    await asyncio.to_thread(self.log_store.sync)
                    self.stats.fsyncs += 1
                    self.stats.fsync_seconds += time.perf_counter() - started
                self.stats.batches += 1
                core.log_synced(self.log_store.last_index(), now)
            self._dispatch(ready)
            changed = core.configuration if ready.configuration_changed else None
            if changed is not None and self.on_configuration_changed is not None:
                self.on_configuration_changed(changed)
            self._hand_over(core.commit_index)
            if not core.has_ready():
                break

    def _dispatch_requests(self, ready: Ready) -> None:
        for peer, message in ready.messages:
            self._spawn(self._call(peer, message))
        ready.messages = []

    def _dispatch(self, ready: Ready) -> None:
        self._dispatch_requests(ready)
        for peer, rpc, term in ready.snapshots:
            self._start_transfer(peer, rpc, term)
        if self._transfers and self.core is not None and self.core.role is not Role.LEADER:
            for task in self._transfers.values():  # a deposed leader sends nothing
                task.cancel()
        for read_id, index in ready.reads:
            future = self._reads.pop(read_id, None)
            if future is not None and not future.done():
                future.set_result(index)
        for read_id in ready.failed_reads:
            future = self._reads.pop(read_id, None)
            if future is not None and not future.done():
                future.set_exception(NotLeader(None))

    async def _call(self, peer: str, message: Message) -> None:
        assert self.transport is not None
        headers = self._leader_view_headers() if isinstance(message, AppendRequest) else None
        try:
            answer = await self.transport.call(peer, message, headers)
        except PeerUnreachable:
            rpc = getattr(message, "rpc", 0)
            if isinstance(message, (AppendRequest, VoteRequest)):
                self._events.put_nowait(_Inbound(Unreachable(0, peer, rpc), None))
            return
        self.last_contact[peer] = time.monotonic()
        if answer is not None:
            self._events.put_nowait(_Inbound(answer, None))

    def _start_transfer(self, peer: str, rpc: int, term: int) -> None:
        """One snapshot transfer per follower: a new one replaces the old."""
        old = self._transfers.pop(peer, None)
        if old is not None:
            old.cancel()
        task: asyncio.Task[None] = asyncio.ensure_future(self._send_snapshot(peer, rpc, term))
        self._transfers[peer] = task
        self._tasks.add(task)

        def done(finished: asyncio.Task[None]) -> None:
            self._tasks.discard(finished)
            if self._transfers.get(peer) is finished:
                del self._transfers[peer]

        task.add_done_callback(done)

    async def _send_snapshot(self, peer: str, rpc: int, leader_term: int) -> None:
        assert self.transport is not None
        newest = self.newest_snapshot()
        if newest is None:
            self._events.put_nowait(_Inbound(Unreachable(0, peer, rpc), None))
            return
        path, index, term = newest

        def progressed() -> None:
            self.last_contact[peer] = time.monotonic()
            self._events.put_nowait(_Inbound(SnapshotProgress(0, peer, rpc), None))

        started = time.monotonic()
        try:
            answer = await self.transport.send_snapshot(
                peer, path, index, term, leader_term, rpc, progressed
            )
        except PeerUnreachable as exc:
            log.warning("snapshot %d to %s failed: %s", index, peer, exc)
            self._events.put_nowait(_Inbound(Unreachable(0, peer, rpc), None))
            return
        log.info("snapshot at entry %d sent to %s in %.2fs", index, peer,
                 time.monotonic() - started)  # fmt: skip
        self._events.put_nowait(_Inbound(answer, None))

    # ---------------------------------------------------------------- apply
    def _hand_over(self, commit: int) -> None:
        """Give newly committed entries to the applier thread, in order."""
        if commit <= self._handed:
            return
        entries = self.log_store.entries(self._handed + 1, commit)
        wanted = {entry.index for entry in entries if entry.index in self._proposals}
        self._handed = commit
        self.stats.entries += len(entries)
        self._apply_queue.put((entries, wanted))

    def _apply_forever(self) -> None:
        while True:
            item = self._apply_queue.get()
            if item is None:
                return
            entries, wanted = item
            with self.applying_lock:
                started = time.perf_counter()
                outcomes = []
                for entry in entries:
                    try:
                        # Views are built only for results someone waits for.
                        outcome = self.applier.apply(entry, want_result=entry.index in wanted)
                    except Exception as exc:  # a bug: stop rather than diverge
                        assert self._loop is not None
                        self.applier_failed = True
                        self._loop.call_soon_threadsafe(
                            self._fail, f"applying entry {entry.index}: {exc!r}"
                        )
                        return
                    outcomes.append((entry.index, entry.term, outcome))
                self.stats.apply_seconds += time.perf_counter() - started
                applied = entries[-1].index
                assert self._loop is not None
                self._loop.call_soon_threadsafe(self._applied, applied, outcomes)
                # Still under the lock: a snapshot captured here must not meet
                # an install swapping the state underneath it.
                if self.after_apply is not None:
                    try:
                        self.after_apply(applied)
                    except Exception as exc:  # e.g. the commit hint could not be written
                        log.exception("after applying entry %d", applied)
                        self._loop.call_soon_threadsafe(
                            self._fail, f"after applying entry {applied}: {exc!r}"
                        )
                        return

    def _applied(self, applied: int, outcomes: list[tuple[int, int, object]]) -> None:
        """On the loop: complete proposals and wake readers waiting for ``applied``."""
        self.applied_index = max(self.applied_index, applied)
        for index, term, outcome in outcomes:
            waiting = self._proposals.pop(index, None)
            if waiting is None:
                continue
            proposed_term, future = waiting
            if future.done():
                continue
            if proposed_term == term:
                future.set_result(Committed(index, term, outcome))
            else:
                future.set_exception(ProposalLost(f"entry {index} went to another leader's write"))
        still: list[tuple[int, asyncio.Future[None]]] = []
        for wanted, waiter in self._waiters:
            if wanted <= self.applied_index:
                if not waiter.done():
                    waiter.set_result(None)
            else:
                still.append((wanted, waiter))
        self._waiters = still

    async def wait_idle_applier(self) -> None:
        """Until every entry handed over so far has been applied."""
        while self.applied_index < self._handed and self.failure is None:
            await asyncio.sleep(0.005)

    # ------------------------------------------------------------- snapshots
    async def install_snapshot(
        self,
        offer: SnapshotRequest,
        prepare: Callable[[], Any],
        commit: Callable[[Any], None],
        discard: Callable[[Any], None],
    ) -> Message:
        """Install a snapshot the leader streamed to us, if the core wants it.

        ``prepare`` (on a worker thread, off the Raft loop) checks the file
        and builds the new state aside; ``commit`` makes the file durable
        under its final name and swaps the state in with one reference. Only
        then does the core trim or restart the log, so a power cut at any
        point leaves either the old state with its log or the new state.
        """
        answer = await self.handle_message(offer)
        if answer is not None:
            return answer  # a stale leader, or nothing we do not already hold
        prepared = await asyncio.to_thread(prepare)

        async def chore() -> Message:
            assert self.core is not None
            now = time.monotonic()
            again = self.core.receive(offer, now)
            if again is not None:  # our commit index moved past it meanwhile
                discard(prepared)
                await self._flush(now)
                return again
            await self.wait_idle_applier()
            if self.failure is not None:
                raise NotAccepting(self.failure)
            await self._take_applying_lock()
            try:
                commit(prepared)
            finally:
                self.applying_lock.release()
            self._handed = max(self._handed, offer.last_index)
            self._applied(offer.last_index, [])
            # The member list the snapshot holds, now the state's.
            held = getattr(self.applier, "configuration", None)
            configuration = held[1] if held is not None and held[0] <= offer.last_index else None
            response = self.core.snapshot_installed(
                offer.sender, offer.last_index, offer.last_term, offer.rpc, time.monotonic(),
                configuration,
            )  # fmt: skip
            await self._flush(now)
            return response

        installed: Message = await self.run_on_loop(chore)
        return installed

    async def _take_applying_lock(self) -> None:
        """Wait for the applier lock off the loop. If the wait is cancelled
        (the node stops), a thread that gets the lock afterwards lets it go
        again: otherwise whoever waits for it next (a snapshot, close())
        would wait for ever."""
        taking = asyncio.ensure_future(asyncio.to_thread(self.applying_lock.acquire))
        try:
            await asyncio.shield(taking)
        except asyncio.CancelledError:
            def release_if_taken(done: asyncio.Future[bool]) -> None:
                if not done.cancelled() and done.exception() is None:
                    self.applying_lock.release()

            taking.add_done_callback(release_if_taken)
            raise

    async def compact(self, index: int, keep_entries: int = 0, keep_bytes: int = 0) -> int:
        async def chore() -> int:
            upto = min(index, self.applied_index)
            return self.log_store.compact_until(upto, keep_entries, keep_bytes)

        removed: int = await self.run_on_loop(chore)
        return removed
