"""The node's data directory brought to life: recovery, Raft, snapshots.

Layout of ``data_dir``: ``LOCK`` (one process at a time), ``cluster`` (the
cluster's id and members, see :mod:`replication.membership`), ``term`` (term and
vote), ``commit`` (a hint: entries up to here are known committed), ``wal/``
(log segments), ``snapshots/``.

Recovery is replay: load the newest valid snapshot, then apply the log up to
the commit hint; the rest is applied once a leader confirms it is committed.
Snapshots are captured on the applier thread (a cheap copy between entries)
and written on a background thread; afterwards the log is compacted up to
the *previous* snapshot, so one damaged snapshot still leaves a way back.
A follower that is too far behind receives the leader's snapshot file and
installs it here.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import ssl
import struct
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, BinaryIO

from indexes.warmup import warm_kernels
from node.digest_cache import DigestCache
from node.errors import NodeFailed
from node.join import join_cluster
from node.settings import Settings
from node.snapshot_inbox import SnapshotInbox, TransferKey
from node.store.digest import state_digest
from node.store.snapshot_codec import (
    READABLE_FORMATS,
    Image,
    capture,
    configuration_of,
    restore,
)
from node.store.state import StateMachine
from node.tls import peer_context
from replication.interfaces import NotAccepting
from replication.membership import (
    ClusterStore,
    Configuration,
    MembershipRefused,
    StartingPoint,
    resolve,
)
from replication.messages import MAX_TERM
from replication.raft import RaftConfig, configurations_in
from replication.runner import RaftNode
from replication.transport import FaultRules, HttpTransport
from wal import (
    CorruptLog,
    CorruptSnapshot,
    CorruptStableState,
    FileLogStore,
    SnapshotInfo,
    SnapshotStore,
    StableStore,
)
from wal.fileutil import fsync_dir, write_atomic

log = logging.getLogger("shoal.engine")

KEEP_SNAPSHOTS = 2
LOST_TAIL_MARKER = "lost-tail"
# Exit status of a node that failed (fail-stop); a supervisor restarts it.
EXIT_FAILED = 75
EXIT_GRACE_SECONDS = 0.5
REPLAY_BATCH = 512
# The log may grow this much past a snapshot even when the state is tiny.
SNAPSHOT_MIN_LOG_BYTES = 4 << 20
# The size-proportional trigger keeps snapshots to at most 1/this of the time.
SNAPSHOT_DUTY_FACTOR = 4
# A quiet node snapshots a log of at least this many bytes, or this share of
# its state: replaying costs about 40 times what snapshotting costs per byte
# (an HNSW insert per vector against a sequential write), so a log of 1/64 of
# the state replays in about the time a snapshot of it would take.
QUIET_SNAPSHOT_MIN_BYTES = 256 << 10
QUIET_SNAPSHOT_STATE_SHARE = 1 / 64
# How long writes and reads in flight may still finish after SIGTERM.
SHUTDOWN_GRACE_SECONDS = 2.0
COMMIT_HINT = struct.Struct("<Q")
HINT_EVERY_SECONDS = 1.0


class DataDirInUse(Exception):
    pass


@dataclass(frozen=True)
class PreparedInstall:
    """A leader's snapshot, checked and loaded into a state built aside."""

    index: int
    term: int
    path: Path
    state: StateMachine


@dataclass
class RecoveryReport:
    snapshot_index: int
    replayed: int
    torn_bytes_cut: int
    # Entries it may have acknowledged were cut: it waits for a newer leader.
    lost_tail: bool
    seconds: float


class Engine:
    def __init__(self, settings: Settings, exit_on_failure: bool = False) -> None:
        self.settings = settings
        self.exit_on_failure = exit_on_failure
        self.data_dir = settings.data_dir
        self.state = StateMachine()
        self.log_store = FileLogStore(self.data_dir / "wal", settings.segment_bytes)
        self.stable = StableStore(self.data_dir / "term")
        self.cluster_store = ClusterStore(self.data_dir / "cluster")
        # The newest committed member list this node stored, and the log
        # index it is in force from; the lists in its log follow (see start).
        self.membership: Configuration | None = None
        self._membership_index = 0
        self._configurations: list[tuple[int, Configuration]] = []
        self._forced = False
        # A fresh node started with --join: it asks the cluster to add it.
        self.joining = False
        # Requests from other nodes refused, by reason (see node.peer_guard).
        self.peer_refusals: dict[str, int] = {"other-cluster": 0, "not-a-member": 0}
        # Requests from members that carried no cluster id (older nodes).
        self.peer_requests_without_id = 0
        self.snapshots = SnapshotStore(self.data_dir / "snapshots")
        for stale in self.snapshots.directory.glob("incoming-*.taken"):
            stale.unlink()
        self.inbox = SnapshotInbox(self.snapshots.directory)
        # Installs of received snapshots under way; the leader polls for them.
        self.installs: dict[TransferKey, asyncio.Task[bytes]] = {}
        self.faults = FaultRules()
        self.raft: RaftNode | None = None
        self.recovery: RecoveryReport | None = None
        self.last_snapshot: SnapshotInfo | None = None
        self._lock_file: IO[bytes] | None = None
        self._snapshot_running = threading.Lock()
        self._bytes_at_snapshot = 0
        self._state_bytes = 0  # size of the newest snapshot file
        # When the last snapshot began (capture) and ended, and what it took.
        self._snapshot_started = 0.0
        self._snapshot_finished = 0.0
        self._snapshot_seconds = 0.0
        self.digests = DigestCache(self.state, self._applier_lock)
        self._hint_written = 0.0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closing = False
        self._quiet_snapshots: asyncio.Task[None] | None = None
        self._peer_context: ssl.SSLContext | None = None

    # ---------------------------------------------------------- lifecycle
    def open(self) -> None:
        """Recover from disk (blocking; run it on a worker thread)."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._lock_data_dir()
        try:
            self._recover()
        except BaseException:  # the process stops; a test may open it again
            if self._lock_file is not None:
                self._lock_file.close()
                self._lock_file = None
            raise

    def _recover(self) -> None:
        warmed = warm_kernels()
        log.info("index kernels ready in %.2fs", warmed)
        started = time.perf_counter()
        self.stable.load()
        if self.stable.value.term > MAX_TERM:
            raise CorruptStableState(
                f"the stored term {self.stable.value.term} is beyond the highest a cluster can "
                f"reach ({MAX_TERM}): its peers would refuse every message this node sent; "
                "restore this node from a backup or add it again as a new member"
            )
        self._resolve_membership()
        snapshot_index, snapshot_term = self._restore_snapshot()
        report = self.log_store.open(start_index=snapshot_index + 1, prev_term=snapshot_term)
        held = self.log_store.term_at(snapshot_index)
        if self.log_store.last_index() < snapshot_index or (
            held is not None and held != snapshot_term
        ):
            # The log ends before the snapshot, or disagrees with it (a
            # snapshot from the leader was installed, and power went before
            # the log was restarted after it): the snapshot wins.
            self.log_store.reset(snapshot_index + 1, snapshot_term)
        if self.log_store.first_index() > snapshot_index + 1:
            raise CorruptLog(
                f"the log starts at entry {self.log_store.first_index()} but the newest usable "
                f"snapshot ends at {snapshot_index}; the entries between are missing"
            )
        self._gather_configurations()
        replayed = self._replay(snapshot_index, self._read_commit_hint())
        marker = self.data_dir / LOST_TAIL_MARKER
        if report.cut_may_include_acknowledged and not marker.exists():
            # Kept until a leader catches this node up: a restart before that
            # finds nothing left to cut, but the entries are still missing.
            write_atomic(marker, b"cut entries this node may have acknowledged\n")
        self.recovery = RecoveryReport(
            snapshot_index,
            replayed,
            report.torn_bytes_cut,
            marker.exists(),
            time.perf_counter() - started,
        )
        log.info(
            "recovered: snapshot at %d, %d entries replayed, %d torn bytes cut, %.2fs",
            snapshot_index, replayed, report.torn_bytes_cut, self.recovery.seconds,
        )  # fmt: skip
        if self.recovery.lost_tail:
            log.warning("entries this node may have acknowledged were cut from its log; it "
                        "will not vote or stand for election until a leader of a newer term "
                        "has brought it up to date")  # fmt: skip

    def _resolve_membership(self) -> None:
        """Which cluster this node belongs to: stored, or bootstrapped now."""
        settings = self.settings
        found = self.cluster_store.load_at()
        stored = found[1] if found is not None else None
        self._membership_index = found[0] if found is not None else 0
        term = self.stable.value
        history = term.term > 0 or any(
            directory.is_dir() and any(directory.iterdir())
            for directory in (self.data_dir / "wal", self.snapshots.directory)
        )
        if settings.join and stored is None:
            # A join that failed before it was answered left at most an empty
            # log segment (the node serves nothing while it joins): retry it.
            if term.term > 0 or any(self.snapshots.directory.iterdir()):
                raise MembershipRefused(
                    "--join is for an empty data directory; this one holds data (wipe it to "
                    "join as a new node, or start it without --join)"
                )
            if settings.peers or settings.force_new_cluster:
                raise MembershipRefused("--join asks an existing cluster: leave out --peers "
                                        "and --force-new-cluster")  # fmt: skip
            if not settings.cluster_secret:
                raise MembershipRefused("--join needs the cluster secret (--cluster-secret)")
            self.joining = True
            return
        configuration, why = resolve(
            stored, settings.node_id, settings.url, settings.peer_urls(),
            StartingPoint(history, term.voted_for), settings.force_new_cluster,
            self.cluster_store.bootstrap,
        )  # fmt: skip
        if len(configuration.members) > 1 and not settings.cluster_secret:
            raise MembershipRefused(
                f"this node belongs to cluster {configuration.cluster_id} of "
                f"{len(configuration.members)} nodes, which needs the cluster secret "
                "(--cluster-secret or SHOAL_CLUSTER_SECRET)"
            )
        self._forced = settings.force_new_cluster
        if why is not None and not self._forced:  # a forced list is saved once the log is open
            self.cluster_store.save(configuration, self._membership_index,
                                    new_bootstrap=stored is None)  # fmt: skip
        if why is not None:
            log.warning("cluster %s: %s", configuration.cluster_id, why)
        self.membership = configuration

    def _gather_configurations(self) -> None:
        """The member lists in force, from the stored one (or the snapshot's,
        when newer) through each CONFIG entry in the log."""
        if self.membership is None:
            return
        if self._forced:
            # In force from the log's end: no list in the log overrides it.
            self._membership_index = self.log_store.last_index()
            self.cluster_store.save(self.membership, self._membership_index, new_bootstrap=True)
        base = (self._membership_index, self.membership)
        applied = self.state.configuration
        if applied is not None and applied[0] > base[0]:
            base = applied
        # The state's list is what snapshots carry: never an older one than
        # the list in force (after a force or a restore, the old cluster's).
        if base is not applied:
            self.state.configuration = base
        self._configurations = configurations_in(self.log_store, base)

    @property
    def configuration(self) -> Configuration:
        """The member list in force: the newest in the log (it takes effect
        when appended, committed or not)."""
        raft = self.raft
        if raft is not None and raft.core is not None and raft.core.configuration is not None:
            return raft.core.configuration
        if self._configurations:
            return self._configurations[-1][1]
        if self.membership is None:
            raise RuntimeError("the node has not opened its data directory or joined")
        return self.membership

    def cluster_supports(self, feature: str) -> bool:
        """Whether every other member said, in its latest answer, that it
        supports ``feature`` (see replication.features)."""
        raft = self.raft
        peers = self.configuration.peers_of(self.settings.node_id)
        if not peers:
            return True
        if raft is None or raft.transport is None:
            return False
        for peer in peers:
            said = raft.transport.features_of(peer)
            if said is None or feature not in said:
                return False
        return True

    def member_urls(self) -> dict[str, str]:
        """Every member's URL by node id, this node's included."""
        try:
            return self.configuration.urls()
        except RuntimeError:  # not opened, or joining and not yet a member
            return {self.settings.node_id: self.settings.url}

    async def start(self) -> None:
        """Join the cluster (or lead a cluster of one) on the running loop."""
        self._loop = asyncio.get_running_loop()
        settings = self.settings
        if self.joining:
            await self._join()
        peers = self.configuration.peers_of(settings.node_id)
        config = RaftConfig(
            settings.node_id,
            tuple(sorted(peers)),
            election_timeout=(settings.election_timeout, 2 * settings.election_timeout),
            heartbeat_interval=settings.heartbeat_interval,
            rpc_timeout=max(0.5, settings.election_timeout / 2),
        )
        transport = None
        if peers or settings.cluster_secret:  # with a secret, members may come later
            transport = HttpTransport(settings.node_id, peers, settings.cluster_secret,
                                      config.rpc_timeout, self.faults,
                                      settings.snapshot_chunk_bytes,
                                      self.configuration.cluster_id,
                                      self.peer_tls())  # fmt: skip
        self.raft = RaftNode(
            config, self.log_store, self.stable, self.state, transport, settings.fsync,
            self._newest_snapshot, after_apply=self._after_apply,
            lost_tail=self.recovery is not None and self.recovery.lost_tail,
            configurations=self._configurations,
            known_members=frozenset(self.cluster_store.known),
        )  # fmt: skip
        self.raft.on_configuration_changed = self._configuration_changed
        self.raft.on_failure = self._failed
        self.raft.on_tail_recovered = self._tail_recovered
        await self.raft.start()
        if settings.snapshot_when_quiet > 0:
            self._quiet_snapshots = asyncio.create_task(
                self._snapshot_when_quiet(settings.snapshot_when_quiet)
            )

    def peer_tls(self) -> ssl.SSLContext:
        """How this node calls peers over https (see node.tls): one context
        for every peer connection, so a SIGHUP reloads it in one place."""
        if self._peer_context is None:
            settings = self.settings
            self._peer_context = peer_context(settings.tls_cert, settings.tls_key,
                                              settings.peer_ca)  # fmt: skip
        return self._peer_context

    async def _join(self) -> None:
        """Ask the cluster behind ``--join`` to add this node as a learner;
        its answer is the member list, which is stored before Raft starts."""
        settings = self.settings
        configuration, index = await join_cluster(
            [url.strip() for url in settings.join.split(",") if url.strip()],
            settings.node_id, settings.url, settings.cluster_secret or "", self.peer_tls(),
        )  # fmt: skip
        # Stored at the index it was committed at: lists from before it (a
        # leader's older snapshot) do not replace it as they are applied.
        await asyncio.to_thread(self.cluster_store.save, configuration, index, True)
        self.membership, self._membership_index = configuration, index
        self._configurations = [(0, configuration)]
        self.joining = False
        log.info("joined cluster %s as a learner", configuration.cluster_id)

    def _configuration_changed(self, configuration: Configuration) -> None:
        """On the loop: the member list in force changed (appended, or undone)."""
        raft = self.raft
        if raft is not None and raft.transport is not None:
            urls = configuration.peers_of(self.settings.node_id)
            # Removed members still get the log until they learn that their
            # removal committed (the core stops sending to them after that).
            for gone in raft.core.progress if raft.core is not None else ():
                known = raft.transport.peer_urls.get(gone)
                if gone not in urls and known is not None:
                    urls[gone] = known
            raft.transport.set_peers(urls)
        newcomers = set(configuration.urls()) - self.cluster_store.known
        if newcomers:
            # Recorded before anything else happens: a node whose log tail is
            # later damaged must not think itself alone (see RaftCore).
            self.cluster_store.remember_members(newcomers)
        log.info("members now: %s", ", ".join(
            f"{m.id}{'' if m.voter else ' (learner)'}" for m in configuration.members))  # fmt: skip

    def _tail_recovered(self) -> None:
        log.info("a leader brought this node up to date again; it votes and stands again")
        (self.data_dir / LOST_TAIL_MARKER).unlink(missing_ok=True)
        fsync_dir(self.data_dir)

    def _failed(self, reason: str) -> None:
        """The node failed: stop the process (the waiting requests have been
        answered; give those answers a moment to leave)."""
        if not self.exit_on_failure:
            return
        log.critical("node %s failed (%s); exiting with status %d so it restarts from disk",
                     self.settings.node_id, reason, EXIT_FAILED)  # fmt: skip
        timer = threading.Timer(EXIT_GRACE_SECONDS, os._exit, args=(EXIT_FAILED,))
        timer.daemon = True
        timer.start()

    @property
    def loop(self) -> asyncio.AbstractEventLoop | None:
        """The event loop the node runs on, once started."""
        return self._loop

    def begin_shutdown(self) -> None:
        """On the loop, when the process is told to stop: new requests are
        refused; those waiting on the cluster get a moment to finish, then
        an answer, instead of holding the drain open until their timeouts."""
        if self.raft is not None and self._loop is not None:
            self.raft.begin_shutdown()
            self._loop.call_later(SHUTDOWN_GRACE_SECONDS, self.raft.abandon_waiting)

    @property
    def handover_seconds(self) -> float:
        """How long a leadership hand-over may take before it is given up."""
        return 2 * self.settings.election_timeout + 0.5

    async def hand_over_before_stopping(self) -> None:
        """A leader being stopped hands over first, so the cluster does not
        wait out an election timeout for its next leader. Called while the
        node still serves: the target's vote request and the new leader's
        first append must reach it (its writes in flight are then answered
        by what the new leader committed)."""
        raft = self.raft
        if raft is None or not raft.is_leader or self._closing:
            return
        if not self.configuration.peers_of(self.settings.node_id):
            return
        started = time.monotonic()
        try:
            leader = await raft.transfer_leadership(None, self.handover_seconds)
        except Exception as exc:  # stopping goes on either way
            log.warning("leadership was not handed over before stopping: %s", exc)
            return
        log.info("handed leadership to %s in %.2fs before stopping", leader,
                 time.monotonic() - started)  # fmt: skip

    async def stop(self) -> None:
        self._closing = True
        if self._quiet_snapshots is not None:
            self._quiet_snapshots.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._quiet_snapshots
        if self.raft is not None:
            await self.raft.stop()
        await asyncio.to_thread(self.close)

    def close(self) -> None:
        # Holding the snapshot lock lets a snapshot being written finish and
        # keeps a new one from starting while the log closes.
        with self._snapshot_running:
            self._write_commit_hint(force=True)
            self.log_store.close()
        if self._lock_file is not None:
            self._lock_file.close()
            self._lock_file = None

    @property
    def failure(self) -> str | None:
        return self.raft.failure if self.raft is not None else None

    @property
    def applied_index(self) -> int:
        return self.state.applied_index

    def ready_reason(self) -> str | None:
        """Why this node should not take traffic now, or None when it should."""
        raft = self.raft
        if raft is None or self._closing:
            return "the node is starting or stopping"
        if raft.failure is not None:
            return raft.failure
        if raft.leader_id is None:
            return "no leader is known"
        if raft.applied_index < raft.commit_index:
            return f"catching up (applied {raft.applied_index} of {raft.commit_index})"
        return None

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
        if meta.get("format") not in READABLE_FORMATS:
            raise CorruptLog(
                f"snapshot {info.path.name} is in snapshot format {meta.get('format')}, which "
                f"this Shoal does not read (it reads formats {READABLE_FORMATS}); wipe the node's "
                "data directory: a cluster node then rejoins from the leader, a single node "
                "starts empty"
            )
        restore(self.state, records, info.index, info.term)
        self.state.configuration = configuration_of(meta)
        self.last_snapshot = info
        self._state_bytes = _file_bytes(info.path)
        return info.index, info.term

    def _replay(self, after: int, commit_hint: int) -> int:
        last = min(self.log_store.last_index(), commit_hint)
        index = after + 1
        replayed_bytes = 0
        while index <= last:
            hi = min(last, index + REPLAY_BATCH - 1)
            for entry in self.log_store.entries(index, hi):
                self.state.apply(entry, want_result=False)
                replayed_bytes += len(entry.payload)
            index = hi + 1
        # The log since the snapshot counts toward the next one, so a node
        # that had a long replay does not keep paying for it at each start.
        self._bytes_at_snapshot = -replayed_bytes
        return max(0, last - after)

    # ------------------------------------------------------- commit hints
    def _read_commit_hint(self) -> int:
        """Entries up to the hint were committed; a cluster of one commits
        everything it logged, so it needs no hint."""
        me = {self.settings.node_id}
        lists = [configuration for _, configuration in self._configurations]
        if lists and all(set(c.urls()) == me for c in lists) and self.cluster_store.known <= me:
            return self.log_store.last_index()
        path = self.data_dir / "commit"
        try:
            (index,) = COMMIT_HINT.unpack(path.read_bytes())
        except (FileNotFoundError, struct.error):
            return 0
        return int(index)

    def _write_commit_hint(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._hint_written < HINT_EVERY_SECONDS:
            return
        self._hint_written = now
        write_atomic(self.data_dir / "commit", COMMIT_HINT.pack(self.state.applied_index))

    # ---------------------------------------------------------- snapshots
    def _after_apply(self, applied: int) -> None:
        """Runs on the applier thread after each applied batch."""
        self._write_commit_hint()
        committed = self.state.configuration
        if committed is not None and committed[0] > self._membership_index:
            # Restarts check --peers against, and start from, this list.
            self.cluster_store.save(committed[1], committed[0])
            self.membership, self._membership_index = committed[1], committed[0]
        if self._closing or not self._snapshot_due(applied):
            return
        if not self._snapshot_running.acquire(blocking=False):
            return
        self._snapshot_started = time.monotonic()
        image = capture(self.state)
        self._bytes_at_snapshot = self.log_store.bytes_written
        threading.Thread(
            target=self._write_snapshot_then_release, args=(image,), name="shoal-snapshot"
        ).start()

    def _snapshot_due(self, applied: int) -> bool:
        """Entries, log bytes, or log bytes against the state's size.

        Replaying the log after a restart costs far more per byte than
        loading a snapshot (each vector goes through the index again, an
        HNSW search per insert), so the log is kept short next to the state
        it would rebuild: a snapshot once it passes ``snapshot_log_ratio``
        of the newest snapshot's size (at least SNAPSHOT_MIN_LOG_BYTES).
        """
        settings = self.settings
        since = applied - (self.last_snapshot.index if self.last_snapshot else 0)
        grown = self.log_store.bytes_written - self._bytes_at_snapshot
        if since >= settings.snapshot_every_entries or grown >= settings.snapshot_every_bytes:
            return True
        proportional = max(SNAPSHOT_MIN_LOG_BYTES, settings.snapshot_log_ratio * self._state_bytes)
        # A snapshot costs time in proportion to the state (a copy on this
        # thread, then encoding and writing). Measured: a 100k-vector HNSW
        # ingest into 3 nodes spent most of its time snapshotting a 145 MB
        # state every 15 MB of log. So the proportional trigger waits until
        # snapshots have taken at most 1/SNAPSHOT_DUTY_FACTOR of the time.
        rested = time.monotonic() - self._snapshot_finished >= (
            SNAPSHOT_DUTY_FACTOR * self._snapshot_seconds
        )
        return grown >= proportional and rested

    async def _snapshot_when_quiet(self, quiet_seconds: float) -> None:
        """Once the applied index has stood still for ``quiet_seconds``, take
        a snapshot of the log applied since the last one (if it is long
        enough to matter, and snapshots are within their share of the time).
        A node killed after a burst of writes then starts without replaying
        them: replaying costs far more per byte than loading a snapshot."""
        seen, since = -1, time.monotonic()
        while not self._closing:
            await asyncio.sleep(quiet_seconds / 4)
            applied, now = self.state.applied_index, time.monotonic()
            if applied != seen:
                seen, since = applied, now
            elif now - since >= quiet_seconds and self._quiet_snapshot_due(applied, now):
                try:
                    await asyncio.to_thread(self._snapshot_if_quiet, applied)
                except Exception:  # a full disk: the log still holds every entry
                    log.exception("snapshot of a quiet node at entry %d failed", applied)
                since = time.monotonic()  # not again at once, whatever happened

    def _quiet_snapshot_due(self, applied: int, now: float) -> bool:
        newest = self.last_snapshot.index if self.last_snapshot is not None else 0
        if applied <= newest or self.failure is not None or self._closing:
            return False
        grown = self.log_store.bytes_written - self._bytes_at_snapshot
        enough = max(QUIET_SNAPSHOT_MIN_BYTES, QUIET_SNAPSHOT_STATE_SHARE * self._state_bytes)
        rested = now - self._snapshot_finished >= SNAPSHOT_DUTY_FACTOR * self._snapshot_seconds
        return grown >= enough and rested

    def _snapshot_if_quiet(self, applied: int) -> None:
        """On a worker thread. Skipped when a snapshot is being written, or
        entries were applied since the loop looked (the node is not quiet)."""
        assert self.raft is not None
        if not self._snapshot_running.acquire(blocking=False):
            return
        try:
            with self.raft.applying_lock:
                if self.state.applied_index != applied or self._closing:
                    return
                if self.raft.applier_failed:  # the state may hold part of an entry
                    return
                self._snapshot_started = time.monotonic()
                image = capture(self.state)
                self._bytes_at_snapshot = self.log_store.bytes_written
            self._write_snapshot(image)
        finally:
            self._snapshot_running.release()

    def _write_snapshot_then_release(self, image: Image) -> None:
        try:
            self._write_snapshot(image)
        except Exception:
            log.exception("snapshot at entry %d failed", image.index)
        finally:
            self._snapshot_running.release()

    def _write_snapshot(self, image: Image) -> SnapshotInfo:
        newest = self.last_snapshot
        if newest is not None and image.index <= newest.index:
            return newest  # a leader's snapshot was installed since the capture
        started = time.perf_counter()
        writer = self.snapshots.begin(image.index, image.term, image.meta())
        try:
            image.write(writer)
            info = writer.commit()
        except BaseException:
            writer.abort()
            raise
        self._snapshot_finished = time.monotonic()
        self._snapshot_seconds = self._snapshot_finished - self._snapshot_started
        kept = self.snapshots.prune(KEEP_SNAPSHOTS)
        if self.last_snapshot is None or info.index > self.last_snapshot.index:
            self.last_snapshot = info
            self._state_bytes = _file_bytes(info.path)
        if len(kept) == KEEP_SNAPSHOTS and self.raft is not None and self._loop is not None:
            # Entries up to the older kept snapshot are covered twice over. As
            # much log as the entry and byte triggers allow stays, though:
            # snapshots may come far more often (snapshot_log_ratio), and a
            # follower a little behind should catch up from the log.
            compacting = self.raft.compact(
                kept[-1].index,
                keep_entries=self.settings.snapshot_every_entries,
                keep_bytes=self.settings.snapshot_every_bytes,
            )
            try:
                asyncio.run_coroutine_threadsafe(compacting, self._loop).result(timeout=60)
            except NotAccepting as exc:  # stopping or failed: the next start compacts
                log.info("log not compacted after the snapshot at entry %d: %s", info.index, exc)
        log.info("snapshot at entry %d written in %.2fs", info.index,
                 time.perf_counter() - started)  # fmt: skip
        return info

    def snapshot_now(self) -> SnapshotInfo:
        """Take a snapshot of the current state and wait until it is on disk."""
        assert self.raft is not None
        with self._snapshot_running:
            with self.raft.applying_lock:
                self._refuse_if_applier_failed()
                self._snapshot_started = time.monotonic()
                image = capture(self.state)
            self._bytes_at_snapshot = self.log_store.bytes_written
            if self.last_snapshot is not None and self.last_snapshot.index == image.index:
                return self.last_snapshot
            return self._write_snapshot(image)

    def _refuse_if_applier_failed(self) -> None:
        assert self.raft is not None
        if self.raft.applier_failed:
            raise NodeFailed("this node's applier failed; its state may hold part of an entry, "
                             "so it takes no snapshot")  # fmt: skip

    def snapshot_for_backup(self) -> tuple[SnapshotInfo, str, BinaryIO]:
        """A snapshot of the state as applied now (every applied entry is
        committed), the state digest at that index, and the file opened (a
        later snapshot may prune it; the open file keeps it, and closes when
        dropped, whoever drops it)."""
        assert self.raft is not None
        with self._snapshot_running:
            with self.raft.applying_lock:
                self._refuse_if_applier_failed()
                self._snapshot_started = time.monotonic()
                image = capture(self.state)
                digest = self.digests.at(image.index) or state_digest(self.state)
            self._bytes_at_snapshot = self.log_store.bytes_written
            newest = self.last_snapshot
            if newest is not None and newest.index == image.index:
                info = newest
            else:
                info = self._write_snapshot(image)
            if info.index != image.index:  # a leader's snapshot was installed meanwhile
                raise RuntimeError("the state moved to a leader's snapshot; try again")
            return info, digest, open(info.path, "rb", buffering=0)  # noqa: SIM115

    def _newest_snapshot(self) -> tuple[Path, int, int] | None:
        newest = self.snapshots.all()
        if not newest:
            return None
        info = newest[0]
        return info.path, info.index, info.term

    def prepare_install(self, path: Path, index: int, term: int) -> PreparedInstall:
        """Check a received snapshot and load it into a new state, aside.

        Blocking and slow for a large snapshot; runs on a worker thread while
        the node goes on serving from its current state.
        """
        try:
            try:
                meta, records = self.snapshots.read(SnapshotInfo(index, term, path))
                if meta.get("format") not in READABLE_FORMATS or meta.get("term") != term:
                    raise CorruptSnapshot(
                        f"the leader's snapshot at {index} has an unexpected meta"
                    )
                fresh = StateMachine()
                restore(fresh, records, index, term)
                fresh.configuration = configuration_of(meta)
            except (CorruptSnapshot, OSError, MemoryError):
                raise  # a disk error is the disk's, not the snapshot's
            except Exception as exc:
                # Bytes that pass their checksums but do not make a state.
                raise CorruptSnapshot(
                    f"the leader's snapshot at {index} does not load: {exc!r:.200}"
                ) from None
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        return PreparedInstall(index, term, path, fresh)

    def commit_install(self, prepared: PreparedInstall) -> None:
        """Make the snapshot durable under its final name, then swap the state.

        Runs on the Raft loop with the applier idle and held; the log is
        trimmed only after this returns.
        """
        name = f"snapshot-{prepared.index:020d}-{prepared.term:020d}.snap"
        final = self.snapshots.directory / name
        os.replace(prepared.path, final)
        fsync_dir(self.snapshots.directory)
        self.state.adopt(prepared.state)
        self.last_snapshot = SnapshotInfo(prepared.index, prepared.term, final)
        self._state_bytes = _file_bytes(final)
        self._bytes_at_snapshot = self.log_store.bytes_written
        self.snapshots.prune(KEEP_SNAPSHOTS)
        self.digests.forget()
        log.info("installed the leader's snapshot at entry %d (term %d)", prepared.index,
                 prepared.term)  # fmt: skip

    def discard_install(self, prepared: PreparedInstall) -> None:
        prepared.path.unlink(missing_ok=True)

    # -------------------------------------------------------------- status
    def _applier_lock(self) -> threading.Lock:
        # Before the Raft node exists nothing applies: a lock of its own will do.
        return self.raft.applying_lock if self.raft is not None else threading.Lock()


def _file_bytes(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0
