"""Several Raft cores in one process over a simulated network and clock.

Seeded: a failing run replays exactly from its seed. The network delays,
drops, duplicates and reorders messages and honours partitions; a crash
loses whatever a node had not synced. Invariants are checked after every
delivery, and :meth:`Cluster.final_checks` verifies durability and
convergence once everything is healed.
"""

from __future__ import annotations

import heapq
import random
from dataclasses import dataclass, field

from replication.messages import Message, Unreachable, decode, encode
from replication.raft import NotLeader, RaftConfig, RaftCore, Ready, Role
from wal import EntryKind
from wal.memory_store import MemoryLogStore


@dataclass
class SimNode:
    node_id: str
    log: MemoryLogStore
    core: RaftCore
    saved_term: tuple[int, str | None] = (0, None)
    applied: list[tuple[int, int, bytes]] = field(default_factory=list)
    up: bool = True


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
    ) -> None:
        self.rng = random.Random(seed)
        self.ids = [f"n{i + 1}" for i in range(size)]
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
        self, node_id: str, log: MemoryLogStore, term: int, voted_for: str | None
    ) -> RaftCore:
        peers = tuple(p for p in self.ids if p != node_id)
        # Small batches, so followers that fall behind catch up over many
        # requests and commit indexes run ahead of what a request carries.
        config = RaftConfig(node_id, peers, election_timeout=(1.0, 2.0), heartbeat_interval=0.1,
                            rpc_timeout=0.5, max_entries=3)  # fmt: skip
        return RaftCore(config, log, term, voted_for, 0, self.now, random.Random(self.rng.random()))

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

    def _post(self, source: str, target: str, message: Message, is_request: bool) -> None:
        if (source, target) in self.blocked or self.rng.random() < self.drop:
            if is_request:  # the sender's RPC fails, a little later
                self._schedule(target, source, Unreachable(0, target, message.rpc), 0.3)
            return
        copies = 2 if self.rng.random() < self.duplicate else 1
        for _ in range(copies):
            # through the wire format, so the codec is exercised too
            self._schedule(
                source, target, decode(encode(message)), self.rng.uniform(0.001, self.max_delay)
            )

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
                node.log.sync()
                core.log_synced(node.log.last_index(), self.now)
            for peer, message in ready.messages:
                self._post(node.node_id, peer, message, is_request=True)
            self._apply(node, core.commit_index)
            ready = core.take_ready()
            if not (ready.save_term or ready.sync_log or ready.messages):
                break

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

    def _check(self, node: SimNode) -> None:
        core = node.core
        if core.role is Role.LEADER:
            holder = self.leaders.setdefault(core.term, node.node_id)
            assert holder == node.node_id, f"two leaders in term {core.term}"
        assert node.saved_term[0] <= core.term

    def crash(self, node_id: str) -> None:
        node = self.nodes[node_id]
        node.up = False
        node.log.crash()
        node.applied.clear()
        self.pending = {k: v for k, v in self.pending.items() if k[0] != node_id}

    def restart(self, node_id: str) -> None:
        node = self.nodes[node_id]
        term, voted_for = node.saved_term
        node.core = self._core(node_id, node.log, term, voted_for)
        node.up = True

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

    def _deliver(self, flight: _Flight) -> None:
        node = self.nodes[flight.target]
        if not node.up:
            return
        response = node.core.receive(flight.message, self.now)
        self._handle_ready(node, node.core.take_ready())  # durable before answering
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
        for node_id, node in self.nodes.items():
            if not node.up:
                self.restart(node_id)
        self.run(3.0)
        marker = b"final-%d" % self.seq
        deadline = self.now + settle
        while self.now < deadline and not self.propose(marker):
            self.run(0.2)
        self.run(settle / 2)
        leader = self.leader()
        assert leader is not None, "no leader after healing"
        applied = [tuple(n.applied) for n in self.nodes.values()]
        assert all(a == applied[0] for a in applied), "nodes applied different sequences"
        contents = {(index, term, payload) for index, term, payload in applied[0]}
        missing = [a for a in self.acked if a not in contents]
        assert not missing, f"acknowledged proposals lost: {missing[:3]}"
        assert any(payload == marker for _, _, payload in applied[0]), "cluster made no progress"
