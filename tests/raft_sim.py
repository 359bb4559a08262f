"""Several Raft cores in one process over a simulated network and clock.

Seeded: a failing run replays exactly from its seed. The network delays,
drops, duplicates and reorders messages and honours partitions; a crash
loses whatever a node had not synced. Each node's applier runs behind its
commit index by a random amount; nodes take snapshots of what they applied
and compact their logs behind the older of their last two, so followers
that fall behind catch up by snapshot transfers, which travel (slowly,
reporting progress), get lost and arrive twice like any message. A disk
fault (an fsync that fails) stops the node, as the runner does.

Invariants are checked after every delivery (one leader per term, terms
never go back, no node's applied state ever goes back or differs from what
was committed), and :meth:`Cluster.final_checks` verifies durability and
convergence once everything is healed.
"""

from __future__ import annotations

import heapq
import random
from dataclasses import dataclass, field

from replication.membership import Configuration, Member
from replication.messages import (
    Message,
    SnapshotProgress,
    SnapshotRequest,
    Unreachable,
    decode,
    encode,
)
from replication.raft import (
    CannotTransfer,
    MembershipChangeRefused,
    NotLeader,
    RaftConfig,
    RaftCore,
    Ready,
    Role,
    configurations_in,
)
from wal import EntryKind
from wal.memory_store import MemoryLogStore

Applied = list[tuple[int, int, bytes]]
# A snapshot: (index, term, applied prefix, the member list in force there).
Snapshot = tuple[int, int, Applied, Configuration | None]


@dataclass
class SimNode:
    node_id: str
    log: MemoryLogStore
    core: RaftCore
    saved_term: tuple[int, str | None] = (0, None)
    # Every entry applied so far, from index 1 (a snapshot install replaces it
    # with the leader's prefix): the state machine, as a list.
    applied: Applied = field(default_factory=list)
    # Durable snapshots, newest last.
    snapshots: list[Snapshot] = field(default_factory=list)
    up: bool = True
    lives: int = 0  # crashes so far: work started before one dies with it
    joined: bool = False  # added later: it knows no member list until a leader's log
    # Every node a list it appended ever named, kept apart from the log (the
    # engine keeps it in <data>/cluster): a damaged tail does not lose it.
    known: set[str] = field(default_factory=set)


@dataclass(order=True)
class _Flight:
    deliver_at: float
    seq: int
    source: str = field(compare=False)
    target: str = field(compare=False)
    message: Message = field(compare=False)


class Cluster:
    def __init__(
        self,
        size: int,
        seed: int,
        drop: float = 0.0,
        duplicate: float = 0.0,
        max_delay: float = 0.02,
        snapshot_every: int = 0,
        disk_faults: float = 0.0,
        apply_lag: int = 0,
    ) -> None:
        self.rng = random.Random(seed)
        # 0: never snapshot. Otherwise after this many applied entries.
        self.snapshot_every = snapshot_every
        self.disk_faults = disk_faults  # chance that one log sync fails
        self.apply_lag = apply_lag  # the applier trails commit by up to this
        # (leader, its term, rpc) -> the snapshot that transfer carries
        self.transfers: dict[tuple[str, int, int], Snapshot] = {}
        # Installs under way: (when done, seq, follower, its lives, offer).
        self.installing: list[tuple[float, int, str, int, SnapshotRequest]] = []
        self.installs = 0
        self.ids = [f"n{i + 1}" for i in range(size)]
        self.initial = Configuration("sim", tuple(Member(n, f"sim://{n}") for n in self.ids))
        self.now = 0.0
        self.drop, self.duplicate, self.max_delay = drop, duplicate, max_delay
        self.blocked: set[tuple[str, str]] = set()
        self.flights: list[_Flight] = []
        self.seq = 0
        self.nodes: dict[str, SimNode] = {}
        self.leaders: dict[int, str] = {}  # term -> leader, over the whole run
        self.committed: dict[int, tuple[int, bytes]] = {}  # index -> (term, payload)
        self.acked: list[tuple[int, int, bytes]] = []  # proposals confirmed applied
        self.pending: dict[tuple[str, int, int], bytes] = {}  # (node, index, term) -> payload
        for node_id in self.ids:
            log = MemoryLogStore()
            self.nodes[node_id] = SimNode(node_id, log, self._core(node_id, log, 0, None))

    def _core(
        self, node_id: str, log: MemoryLogStore, term: int, voted_for: str | None,
        joined: bool = False,
    ) -> RaftCore:  # fmt: skip
        peers = tuple(p for p in self.initial.urls() if p != node_id)
        # Small batches, so followers that fall behind catch up over many
        # requests and commit indexes run ahead of what a request carries.
        config = RaftConfig(node_id, peers, election_timeout=(1.0, 2.0), heartbeat_interval=0.1,
                            rpc_timeout=0.5, max_entries=3, snapshot_backoff=0.3,
                            snapshot_stall=3.0)  # fmt: skip
        node = self.nodes.get(node_id)
        commit = node.snapshots[-1][0] if node is not None and node.snapshots else 0
        # As a node restarts: the newest snapshot's list, or the bootstrap
        # list (none for a node that joined later), then the log's CONFIG entries.
        base: tuple[int, Configuration] | None = None if joined else (0, self.initial)
        if node is not None and node.snapshots and node.snapshots[-1][3] is not None:
            base = (node.snapshots[-1][0], node.snapshots[-1][3])
        known = frozenset(node.known) if node is not None else frozenset()
        return RaftCore(
            config, log, term, voted_for, commit, self.now, random.Random(self.rng.random()),
            configurations=configurations_in(log, base), known_members=known,
        )  # fmt: skip

    # ------------------------------------------------------------ network
    def partition(self, *groups: list[str]) -> None:
        """Only nodes in the same group can talk."""
        self.blocked = {(a, b) for a in self.ids for b in self.ids
                        if a != b and not any(a in g and b in g for g in groups)}  # fmt: skip

    def block(self, source: str, target: str) -> None:
        """Drop everything ``source`` sends to ``target`` (one direction only)."""
        self.blocked.add((source, target))

    def heal(self) -> None:
        self.blocked.clear()

    def _post(
        self, source: str, target: str, message: Message, is_request: bool, after: float = 0.0
    ) -> None:
        if (source, target) in self.blocked or self.rng.random() < self.drop:
            # The RPC fails at whoever made it, a little later (a lost answer
            # looks the same to the caller as a lost request).
            caller, callee = (source, target) if is_request else (target, source)
            self._schedule(callee, caller, Unreachable(0, callee, message.rpc), after + 0.3)
            return
        copies = 2 if self.rng.random() < self.duplicate else 1
        for _ in range(copies):
            # through the wire format, so the codec is exercised too
            delay = after + self.rng.uniform(0.001, self.max_delay)
            self._schedule(source, target, decode(encode(message)), delay)

    def _schedule(self, source: str, target: str, message: Message, delay: float) -> None:
        self.seq += 1
        heapq.heappush(self.flights, _Flight(self.now + delay, self.seq, source, target, message))

    # -------------------------------------------------------------- nodes
    def _handle_ready(self, node: SimNode, ready: Ready) -> None:
        """As the runner does: durable first, then send, then apply; repeat
        while syncing released more work."""
        core = node.core
        while True:
            if ready.save_term:
                node.saved_term = (core.term, core.voted_for)
            if ready.sync_log:
                if self.rng.random() < self.disk_faults:
                    self.crash(node.node_id)  # fsync failed: the node stops
                    return
                node.log.sync()
                core.log_synced(node.log.last_index(), self.now)
            if ready.configuration_changed:
                node.known |= set(core.members)
            for peer, message in ready.messages:
                self._post(node.node_id, peer, message, is_request=True)
            for peer, rpc, term in ready.snapshots:
                self._send_snapshot(node, peer, rpc, term)
            lag = self.rng.randint(0, self.apply_lag) if self.apply_lag else 0
            self._apply(node, core.commit_index - lag)
            ready = core.take_ready()
            if not (ready.save_term or ready.sync_log or ready.messages or ready.snapshots
                    or ready.configuration_changed):  # fmt: skip
                break

    def _send_snapshot(self, node: SimNode, peer: str, rpc: int, leader_term: int) -> None:
        """Start a transfer of the node's newest snapshot: a few progress
        reports, then the offer; lost on the way like any request."""
        if not node.snapshots:
            self._schedule(peer, node.node_id, Unreachable(0, peer, rpc), 0.05)
            return
        index, term, prefix, configuration = node.snapshots[-1]
        self.transfers[(node.node_id, leader_term, rpc)] = (index, term, prefix, configuration)
        delay = 0.0
        for _ in range(self.rng.randint(0, 3)):
            delay += self.rng.uniform(0.05, 0.4)
            if (peer, node.node_id) not in self.blocked:
                self._schedule(peer, node.node_id, SnapshotProgress(0, peer, rpc), delay)
        offer = SnapshotRequest(leader_term, node.node_id, index, term, rpc)
        self._post(node.node_id, peer, offer, is_request=True, after=delay)

    def _finish_install(self, node_id: str, lives: int, offer: SnapshotRequest) -> None:
        node = self.nodes[node_id]
        if not node.up or node.lives != lives:  # it crashed while building
            self._schedule(node_id, offer.sender, Unreachable(0, node_id, offer.rpc), 0.01)
            return
        response = node.core.receive(offer, self.now)  # asked again: things moved on
        if response is None:
            response = self._install(node, offer)
        self._handle_ready(node, node.core.take_ready())
        if node.up:
            self._post(node_id, offer.sender, response, is_request=False)
        self._check(node)

    def _install(self, node: SimNode, offer: SnapshotRequest) -> Message:
        """The follower's side of a transfer the core asked to install."""
        index, term, prefix, configuration = self.transfers[(offer.sender, offer.term, offer.rpc)]
        assert index > len(node.applied), (
            f"{node.node_id} would roll back from {len(node.applied)} to {index}"
        )
        for entry_index, entry_term, payload in prefix:
            seen = self.committed.setdefault(entry_index, (entry_term, payload))
            assert seen == (entry_term, payload), f"snapshot differs at {entry_index}"
        node.applied = list(prefix)
        node.snapshots = [*node.snapshots[-1:], (index, term, list(prefix), configuration)]
        self.installs += 1
        return node.core.snapshot_installed(
            offer.sender, index, term, offer.rpc, self.now, configuration
        )

    def _apply(self, node: SimNode, commit: int) -> None:
        while len(node.applied) < commit:
            index = len(node.applied) + 1
            entry = node.log.entries(index, index)[0]
            seen = self.committed.setdefault(index, (entry.term, entry.payload))
            assert seen == (entry.term, entry.payload), (
                f"{node.node_id} applied a different entry at {index}: {seen} vs {entry}"
            )
            node.applied.append((index, entry.term, entry.payload))
            key = (node.node_id, index, entry.term)
            if key in self.pending and entry.kind is EntryKind.COMMAND:
                self.acked.append((index, entry.term, self.pending.pop(key)))
        self._maybe_snapshot(node)

    def _maybe_snapshot(self, node: SimNode) -> None:
        """Snapshot what was applied; compact behind the older kept snapshot."""
        newest = node.snapshots[-1][0] if node.snapshots else 0
        applied = len(node.applied)
        if not self.snapshot_every or applied - newest < self.snapshot_every:
            return
        configuration = node.core.configuration_at(applied)
        snapshot = (applied, node.applied[-1][1], list(node.applied), configuration)
        node.snapshots = [*node.snapshots[-1:], snapshot]
        if len(node.snapshots) == 2:
            node.log.compact_until(node.snapshots[0][0])

    def _check(self, node: SimNode) -> None:
        core = node.core
        if core.role is Role.LEADER:
            holder = self.leaders.setdefault(core.term, node.node_id)
            assert holder == node.node_id, f"two leaders in term {core.term}"
        assert node.saved_term[0] <= core.term
        assert core.commit_index >= len(node.applied) or not node.up, (
            f"{node.node_id} applied {len(node.applied)} past its commit {core.commit_index}"
        )

    def crash(self, node_id: str) -> None:
        node = self.nodes[node_id]
        node.up = False
        node.lives += 1
        node.log.crash()
        # Recovery is the newest snapshot; the log replays once commit is known.
        node.applied = list(node.snapshots[-1][2]) if node.snapshots else []
        self.pending = {k: v for k, v in self.pending.items() if k[0] != node_id}

    def restart(self, node_id: str) -> None:
        node = self.nodes[node_id]
        term, voted_for = node.saved_term
        node.core = self._core(node_id, node.log, term, voted_for, node.joined)
        node.up = True

    # ----------------------------------------------------------- membership
    def add_node(self, node_id: str) -> None:
        """A new, empty node that knows no member list (``--join``)."""
        log = MemoryLogStore()
        self.ids.append(node_id)
        self.nodes[node_id] = SimNode(node_id, log, self._core(node_id, log, 0, None, True),
                                      joined=True)  # fmt: skip

    def change(self, voters: list[str], learners: tuple[str, ...] = ()) -> bool:
        """Ask whichever node leads for this member list; False when it refused."""
        leader = self.leader()
        if leader is None:
            return False
        members = [Member(n, f"sim://{n}", True) for n in voters]
        members += [Member(n, f"sim://{n}", False) for n in learners]
        try:
            leader.core.propose_configuration(Configuration("sim", tuple(members)), self.now)
        except (NotLeader, MembershipChangeRefused):
            return False
        self._handle_ready(leader, leader.core.take_ready())
        return True

    # -------------------------------------------------------------- driving
    def propose(self, payload: bytes) -> bool:
        """Offer a command to whichever node believes it leads."""
        for node in self.nodes.values():
            if node.up and node.core.role is Role.LEADER:
                try:
                    index, term = node.core.propose(payload, self.now)
                except NotLeader:
                    continue
                self.pending[(node.node_id, index, term)] = payload
                self._handle_ready(node, node.core.take_ready())
                return True
        return False

    def transfer(self, target: str | None) -> str | None:
        """Ask whichever node leads to hand over to ``target``; the target
        chosen, or None when no node leads or the core refuses."""
        leader = self.leader()
        if leader is None:
            return None
        try:
            chosen = leader.core.transfer_leadership(target, self.now)
        except (NotLeader, CannotTransfer):
            return None
        self._handle_ready(leader, leader.core.take_ready())
        return chosen

    def run(self, seconds: float, tick: float = 0.01) -> None:
        end = self.now + seconds
        while self.now < end:
            self.now = round(self.now + tick, 6)
            for node in self.nodes.values():
                if node.up:
                    node.core.tick(self.now)
                    self._handle_ready(node, node.core.take_ready())
                    self._check(node)
            while self.flights and self.flights[0].deliver_at <= self.now:
                self._deliver(heapq.heappop(self.flights))
            while self.installing and self.installing[0][0] <= self.now:
                self._finish_install(*heapq.heappop(self.installing)[2:])

    def _deliver(self, flight: _Flight) -> None:
        node = self.nodes[flight.target]
        if not node.up:
            return
        message = flight.message
        if isinstance(message, SnapshotProgress) and not self.nodes[message.sender].up:
            return  # a follower that is down takes no chunks
        response = node.core.receive(message, self.now)
        if response is None and isinstance(message, SnapshotRequest):
            # The follower builds the new state aside for a while, serving
            # and answering meanwhile; then it asks its core again.
            self.seq += 1
            done_at = self.now + self.rng.uniform(0.0, 0.6)
            work = (done_at, self.seq, node.node_id, node.lives, message)
            heapq.heappush(self.installing, work)
        self._handle_ready(node, node.core.take_ready())  # durable before answering
        if not node.up:
            return
        if response is not None:
            self._post(node.node_id, flight.source, response, is_request=False)
        self._check(node)

    def leader(self) -> SimNode | None:
        leading = [n for n in self.nodes.values() if n.up and n.core.role is Role.LEADER]
        return max(leading, key=lambda n: n.core.term) if leading else None

    # -------------------------------------------------------------- checks
    def final_checks(self, settle: float = 20.0) -> None:
        """Heal, let the cluster settle, then: a leader, equal applied state on
        every node, and every acknowledged proposal present."""
        self.heal()
        self.disk_faults = 0.0
        self.apply_lag = 0
        for node_id, node in self.nodes.items():
            if not node.up:
                self.restart(node_id)
        self.run(3.0)
        marker = b"final-%d" % self.seq
        deadline = self.now + settle
        while self.now < deadline and not self.propose(marker):
            self.run(0.2)
        self.run(settle / 2)
        # The lossy network may still cost the leader a round of check-quorum
        # now and then: wait (bounded) for a leader whose members agree.
        deadline = self.now + settle
        while True:
            leader = self.leader()
            # Members of the leader's list; removed nodes stop where they were.
            members = leader.core.members if leader is not None else frozenset()
            applied = [tuple(n.applied) for n in self.nodes.values() if n.node_id in members]
            agreed = leader is not None and all(a == applied[0] for a in applied)
            if agreed or self.now >= deadline:
                break
            self.run(0.5)
        assert leader is not None, "no leader after healing"
        assert all(a == applied[0] for a in applied), "nodes applied different sequences"
        contents = {(index, term, payload) for index, term, payload in applied[0]}
        missing = [a for a in self.acked if a not in contents]
        assert not missing, f"acknowledged proposals lost: {missing[:3]}"
        assert any(payload == marker for _, _, payload in applied[0]), "cluster made no progress"
