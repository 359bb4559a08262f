"""The Raft core: elections, log replication and commit, as a deterministic
state machine.

It never sleeps, never reads the clock (``now`` is passed in), never sends
and never syncs. Callers feed it events (:meth:`RaftCore.tick`,
:meth:`RaftCore.receive`, :meth:`RaftCore.propose`) and then take a
:class:`Ready`: what must be made durable (term and vote, the log) *before*
any message or response it produced leaves the node, which messages to send,
and how far entries are committed.

Safety rules kept here (RELIABILITY.md):
- one vote per term, and the vote is durable before it is answered;
- a leader only appends; a follower truncates only after the first conflict
  and never a committed entry (violations raise :class:`SafetyViolation`);
- a leader commits only entries of its own term by counting, and counts
  itself only up to what it has synced;
- pre-vote and check-quorum: a node that cannot win does not bump terms, a
  node that hears from a live leader ignores vote requests, and a leader
  that loses touch with a majority steps down.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol

from replication.membership import (
    Configuration,
    Member,
    decode_configuration,
    encode_configuration,
)
from replication.messages import (
    MAX_TERM,
    AppendRequest,
    AppendResponse,
    Message,
    SnapshotProgress,
    SnapshotRequest,
    SnapshotResponse,
    TimeoutNow,
    Unreachable,
    VoteRequest,
    VoteResponse,
)
from wal import EntryKind, LogEntry


class SafetyViolation(AssertionError):
    """Something Raft forbids was about to happen; the node must stop."""


class NotLeader(Exception):
    def __init__(self, leader_id: str | None) -> None:
        super().__init__(f"not the leader (leader: {leader_id or 'unknown'})")
        self.leader_id = leader_id


class HandingOver(NotLeader):
    """The leader is handing leadership to another node: retry shortly."""

    def __init__(self, target: str) -> None:
        Exception.__init__(self, f"leadership is moving to {target}")
        self.leader_id = None
        self.target = target


class CannotTransfer(ValueError):
    """A leadership transfer that cannot be made (no such voter, no peers)."""


class MembershipChangeRefused(ValueError):
    """A membership change that cannot be made now or at all."""


class Role(StrEnum):
    FOLLOWER = "follower"
    PRE_CANDIDATE = "pre-candidate"
    CANDIDATE = "candidate"
    LEADER = "leader"


class RaftLog(Protocol):
    def first_index(self) -> int: ...
    def last_index(self) -> int: ...
    def last_term(self) -> int: ...
    def term_at(self, index: int) -> int | None: ...
    def entries(self, lo: int, hi: int) -> list[LogEntry]: ...
    def append(self, entries: list[LogEntry]) -> None: ...
    def truncate_after(self, index: int) -> None: ...
    def reset(self, start_index: int, prev_term: int) -> None: ...


class TermStore(Protocol):
    @property
    def value(self) -> object: ...


@dataclass(frozen=True)
class RaftConfig:
    node_id: str
    peers: tuple[str, ...]
    election_timeout: tuple[float, float] = (1.0, 2.0)
    heartbeat_interval: float = 0.15
    rpc_timeout: float = 1.0
    max_inflight: int = 4
    max_entries: int = 512
    max_bytes: int = 8 << 20
    # A snapshot transfer that reports no progress for this long is given up.
    snapshot_stall: float = 30.0
    # After a failed transfer, wait this long before offering another.
    snapshot_backoff: float = 1.0
    # A node that lost entries it may have acknowledged waits this long for
    # a newer leader before it votes and campaigns again (see RaftCore).
    lost_tail_patience: float = 15.0

    def __post_init__(self) -> None:
        low, high = self.election_timeout
        if not 0 < low <= high:
            raise ValueError("election timeout must be a range with 0 < low <= high")
        if self.heartbeat_interval * 3 > low:
            raise ValueError("heartbeat interval must be under a third of the election timeout")
        if self.node_id in self.peers:
            raise ValueError("peers must not include this node")


class PeerState(StrEnum):
    """How the leader feeds one follower (etcd's Progress states).

    PROBE: where the follower's log matches ours is not known; one append
    at a time, and only a rejection moves ``next_index`` back. REPLICATE:
    the follower matched; appends are pipelined. SNAPSHOT: the follower
    needs entries we compacted; one snapshot transfer is under way and only
    heartbeats go out beside it.
    """

    PROBE = "probe"
    REPLICATE = "replicate"
    SNAPSHOT = "snapshot"


@dataclass
class Progress:
    """What the leader knows of one follower."""

    next_index: int
    match_index: int = 0
    state: PeerState = PeerState.PROBE
    # Appends sent and not yet answered: rpc -> (send time, prev_index).
    inflight: dict[int, tuple[float, int]] = field(default_factory=dict)
    last_sent: float = -1e9
    last_ack: float = 0.0  # when a response last arrived (check-quorum)
    acked_sent: float = -1e9  # send time of the newest request it answered
    # In SNAPSHOT state: the transfer under way (0: none, waiting to retry),
    # when it last made progress, and when a failed one may be retried.
    snapshot_rpc: int = 0
    snapshot_seen: float = 0.0
    snapshot_retry_at: float = 0.0


@dataclass
class Ready:
    save_term: bool = False
    sync_log: bool = False
    messages: list[tuple[str, Message]] = field(default_factory=list)
    # Transfers to start: (peer, rpc, our term). The runner sends its newest
    # snapshot and reports back with SnapshotProgress, SnapshotResponse or
    # Unreachable.
    snapshots: list[tuple[str, int, int]] = field(default_factory=list)
    commit_index: int = 0
    reads: list[tuple[int, int]] = field(default_factory=list)
    failed_reads: list[int] = field(default_factory=list)
    # The member list changed (the runner connects to new members).
    configuration_changed: bool = False


@dataclass
class _Read:
    read_id: int
    index: int
    since: float


class RaftCore:
    def __init__(
        self,
        config: RaftConfig,
        log: RaftLog,
        term: int,
        voted_for: str | None,
        commit_index: int,
        now: float,
        rng: random.Random | None = None,
        lost_tail: bool = False,
        configurations: list[tuple[int, Configuration]] | None = None,
        known_members: frozenset[str] = frozenset(),
    ) -> None:
        """``lost_tail``: this node cut entries off its log at start that it may
        have acknowledged. Until it hears a leader of a newer term it neither
        votes nor campaigns: a majority counting it could lack those entries.
        It takes part again once a leader has brought it up to that leader's
        commit index (it then holds every committed entry again), or when no
        leader has been heard for ``lost_tail_patience`` (every node lost
        power and cut its tail, say: waiting longer could never end).

        ``configurations``: the member lists in force, as (log index, list),
        oldest first: the one of the newest snapshot (or the bootstrap list,
        at index 0) and each CONFIG entry in the log after it (see
        :func:`configurations_in`). None: ``config.peers`` and this node, all
        voters. An empty list: a node that joins and knows no list yet; it
        never campaigns until a leader's log makes it a voter.
        ``known_members``: every node any list this node ever appended named
        (kept durably apart from the log): a node is alone only if that is
        at most itself."""
        self.config = config
        self.id = config.node_id
        self.log = log
        self.term = term
        self.voted_for = voted_for
        self.commit_index = commit_index
        self.role = Role.FOLLOWER
        self.leader_id: str | None = None
        self.rng = rng or random.Random()
        self.progress: dict[str, Progress] = {}
        self.synced_index = log.last_index()
        self._votes: set[str] = set()
        self._rpc = 0
        self._ready = Ready(commit_index=commit_index)
        self._last_leader_contact = -1e9
        self._election_deadline = now + self._random_timeout()
        self._became_leader_at = 0.0
        self._reads: list[_Read] = []
        self._pending_reads: list[_Read] = []
        self.terms_seen = [term]
        self.halted = False
        # A leadership transfer under way: the target, and when it gives up.
        self.transfer_to: str | None = None
        self._transfer_deadline = 0.0
        self._now = now
        self._configuration_committed_at = 0.0
        if configurations is None:
            members = (Member(node, "", True) for node in (config.node_id, *config.peers))
            configurations = [(0, Configuration("", tuple(members)))]
        self._configurations: list[tuple[int, Configuration]] = list(configurations)
        self.voters: frozenset[str] = frozenset()
        self.members: frozenset[str] = frozenset()
        self._take_configuration()
        # Alone only if no list it knows ever named another node: a damaged
        # tail may have cut the entries that grew the cluster, and a node
        # that wrongly thinks itself alone commits by itself.
        alone = (
            bool(self._configurations)
            and all(set(c.urls()) == {self.id} for _, c in self._configurations)
            and known_members <= {self.id}
        )
        # A cluster of one has nobody to wait for.
        self.waits_for_leader_after = term if lost_tail and not alone else None
        self._patience_from = now
        if alone:
            self._election_deadline = now  # a cluster of one elects itself at once

    # ------------------------------------------------------------- helpers
    @property
    def quorum(self) -> int:
        return len(self.voters) // 2 + 1

    @property
    def configuration(self) -> Configuration | None:
        """The member list in force (the newest in the log), if any."""
        return self._configurations[-1][1] if self._configurations else None

    @property
    def configuration_index(self) -> int:
        return self._configurations[-1][0] if self._configurations else 0

    def configuration_at(self, index: int) -> Configuration | None:
        """The member list in force at log index ``index`` (for a snapshot)."""
        earlier = [c for at, c in self._configurations if at <= index]
        return earlier[-1] if earlier else None

    def _take_configuration(self) -> None:
        """Voters, members and (on a leader) progress after the list changed."""
        latest = self.configuration
        self.voters = frozenset(latest.voters()) if latest else frozenset()
        self.members = frozenset(latest.urls()) if latest else frozenset()
        self._ready.configuration_changed = True
        if self.role is Role.LEADER:
            nxt = self.log.last_index() + 1
            for peer in sorted(self.members - {self.id} - set(self.progress)):
                self.progress[peer] = Progress(nxt, last_ack=self._now)
            # Removed members keep being sent the log until the change that
            # removed them commits: so they learn it, and stop campaigning.
            self._drop_departed()

    def _drop_departed(self) -> None:
        """Stop sending to removed members once they answered a request sent
        after their removal committed (it told them so: they stop campaigning)."""
        if self.configuration_index > self.commit_index:
            return
        for gone in sorted(set(self.progress) - self.members):
            progress = self.progress[gone]
            told = (progress.match_index >= self.configuration_index
                    and progress.acked_sent >= self._configuration_committed_at)  # fmt: skip
            if told:
                del self.progress[gone]

    def _configurations_appended(self, entries: list[LogEntry]) -> None:
        changed = False
        for entry in entries:
            if entry.kind is EntryKind.CONFIG:
                self._configurations.append((entry.index, decode_configuration(entry.payload)))
                changed = True
        if changed:
            self._take_configuration()

    def _configurations_truncated(self, after: int) -> None:
        kept = [(index, c) for index, c in self._configurations if index <= after]
        if len(kept) != len(self._configurations):
            self._configurations = kept
            self._take_configuration()

    def _voter_peers(self) -> list[str]:
        return sorted(self.voters - {self.id})

    def _tally(self) -> int:
        """Votes that count: those of voters of the list in force."""
        return len(self._votes & self.voters)

    def _may_campaign(self) -> bool:
        """A voter may; so may a node that a change not yet committed (as far
        as it knows) made a learner or removed: that change may need this
        node's log to commit, and without it nobody could be elected (the
        others' logs lack the change)."""
        if self.term >= MAX_TERM:  # its next term would be refused by every peer
            return False
        if self.id in self.voters:
            return True
        if self.configuration_index > self.commit_index and len(self._configurations) >= 2:
            return self.id in self._configurations[-2][1].voters()
        return False

    def _random_timeout(self) -> float:
        low, high = self.config.election_timeout
        return self.rng.uniform(low, high)

    def _next_rpc(self) -> int:
        self._rpc += 1
        return self._rpc

    def _send(self, peer: str, message: Message) -> None:
        self._ready.messages.append((peer, message))

    def _set_term(self, term: int, voted_for: str | None) -> None:
        if term < self.term:
            raise SafetyViolation(f"term going backwards {self.term} -> {term}")
        if term == self.term and self.voted_for not in (None, voted_for):
            raise SafetyViolation(f"second vote in term {term}")
        if (term, voted_for) != (self.term, self.voted_for):
            self.term, self.voted_for = term, voted_for
            self._ready.save_term = True
            self.terms_seen.append(term)

    def _become_follower(self, term: int, leader: str | None, now: float) -> None:
        if term > self.term:
            self._set_term(term, None)
        was_leader = self.role is Role.LEADER
        self.role = Role.FOLLOWER
        self.leader_id = leader
        self._votes.clear()
        self.transfer_to = None
        if was_leader:
            self.progress.clear()
            self._ready.failed_reads += [read.read_id for read in self._reads + self._pending_reads]
            self._reads.clear()
            self._pending_reads.clear()
        self._election_deadline = now + self._random_timeout()

    def _log_up_to_date(self, last_index: int, last_term: int) -> bool:
        mine = self.log.last_term()
        return last_term > mine or (last_term == mine and last_index >= self.log.last_index())

    def halt(self) -> None:
        """This node failed: it stops leading and never votes or ticks again."""
        if self.role is Role.LEADER:
            self._become_follower(self.term, None, 0.0)
        self.leader_id = None
        self.halted = True

    # --------------------------------------------------------------- ticks
    def tick(self, now: float) -> None:
        self._now = now
        if self.halted:
            return
        if self.role is Role.LEADER:
            self._leader_tick(now)
        elif not self._may_campaign():
            self._election_deadline = now + self._random_timeout()  # learners never campaign
        elif now >= self._election_deadline:
            if self.waits_for_leader_after is not None:
                patience = self.config.lost_tail_patience
                if now - max(self._patience_from, self._last_leader_contact) < patience:
                    self._election_deadline = now + self._random_timeout()
                    return
                self.waits_for_leader_after = None  # no leader anywhere: take part
            self._start_pre_vote(now)

    def _start_pre_vote(self, now: float) -> None:
        self.role = Role.PRE_CANDIDATE
        self.leader_id = None
        self._votes = {self.id}
        self._election_deadline = now + self._random_timeout()
        if self._tally() >= self.quorum:
            self._start_election(now)
            return
        for peer in self._voter_peers():
            self._send(
                peer,
                VoteRequest(
                    self.term + 1,
                    self.id,
                    self.log.last_index(),
                    self.log.last_term(),
                    True,
                    self._next_rpc(),
                ),
            )

    def _start_election(self, now: float, transfer: bool = False) -> None:
        self.role = Role.CANDIDATE
        self._set_term(self.term + 1, self.id)
        self._votes = {self.id}
        self._election_deadline = now + self._random_timeout()
        if self._tally() >= self.quorum:
            self._become_leader(now)
            return
        for peer in self._voter_peers():
            self._send(
                peer,
                VoteRequest(
                    self.term,
                    self.id,
                    self.log.last_index(),
                    self.log.last_term(),
                    False,
                    self._next_rpc(),
                    transfer,
                ),
            )

    def _become_leader(self, now: float) -> None:
        self.role = Role.LEADER
        self.leader_id = self.id
        self._became_leader_at = now
        nxt = self.log.last_index() + 1
        # Where each follower's log matches ours is unknown: probe from our end.
        peers = sorted(self.members - {self.id})  # sorted: a seeded simulation replays exactly
        self.progress = {peer: Progress(nxt, last_ack=now) for peer in peers}
        # A no-op of our own term: committing it commits everything before it.
        self._append_local(b"", EntryKind.NOOP)
        self._broadcast(now, force=True)

    def _leader_tick(self, now: float) -> None:
        if self.transfer_to is not None and now >= self._transfer_deadline:
            self.transfer_to = None  # the target did not take over: lead on
        low = self.config.election_timeout[0]
        if now - self._became_leader_at >= low:
            heard = int(self.id in self.voters) + sum(
                1 for peer, p in self.progress.items()
                if peer in self.voters and now - p.last_ack < low
            )  # fmt: skip
            if heard < self.quorum:  # check-quorum: we may be cut off; stop leading
                self._become_follower(self.term, None, now)
                return
        for progress in self.progress.values():
            timed_out = [rpc for rpc, (sent, _) in progress.inflight.items()
                         if now - sent > self.config.rpc_timeout]  # fmt: skip
            for rpc in timed_out:
                self._on_lost(progress, rpc, now)
            transferring = progress.state is PeerState.SNAPSHOT and progress.snapshot_rpc
            if transferring and now - progress.snapshot_seen > self.config.snapshot_stall:
                self._snapshot_failed(progress, now)
        self._broadcast(now, force=False)

    # ----------------------------------------------------------- proposals
    def propose(self, payload: bytes, now: float) -> tuple[int, int]:
        """Append a command; returns (index, term). Raises NotLeader."""
        self._now = now
        if self.role is not Role.LEADER or self.halted:
            raise NotLeader(self.leader_id)
        if self.transfer_to is not None:
            # Entries appended now would keep the target behind us for good.
            raise HandingOver(self.transfer_to)
        index = self._append_local(payload, EntryKind.COMMAND)
        self._broadcast(now, force=False, fresh_only=True)
        return index, self.term

    def _append_local(self, payload: bytes, kind: EntryKind) -> int:
        index = self.log.last_index() + 1
        entry = LogEntry(index, self.term, kind, payload)
        self.log.append([entry])
        self._ready.sync_log = True
        if kind is EntryKind.CONFIG:
            self._configurations_appended([entry])
        return index

    def propose_configuration(self, configuration: Configuration, now: float) -> tuple[int, int]:
        """Append a new member list; returns (index, term).

        One change at a time, and each moves at most one voter (a learner
        may come or go freely): any majority of the old voters and any of
        the new then overlap, so two leaders of one term cannot be elected
        across a change (Raft thesis §4.1). Not before this leader has
        committed an entry of its own term: a change of an earlier leader
        that never committed could otherwise be overtaken (the thesis's
        errata to §4.1). A leader that removes itself leads until the
        change commits, then steps down.
        """
        self._now = now
        if self.role is not Role.LEADER or self.halted:
            raise NotLeader(self.leader_id)
        if self.transfer_to is not None:
            raise HandingOver(self.transfer_to)
        if self.configuration_index > self.commit_index:
            raise MembershipChangeRefused(
                f"the change at entry {self.configuration_index} has not committed yet; one "
                "change at a time"
            )
        if self.log.term_at(self.commit_index) != self.term:
            raise MembershipChangeRefused("this leader is new; retry in a moment")
        new_voters = frozenset(configuration.voters())
        ids = [member.id for member in configuration.members]
        current = self.configuration
        if len(set(ids)) != len(ids):
            raise MembershipChangeRefused("a member list names a node twice")
        if current is not None and configuration.cluster_id != current.cluster_id:
            raise MembershipChangeRefused("a member list of another cluster")
        if not new_voters:
            raise MembershipChangeRefused("a cluster needs at least one voter")
        if len(new_voters ^ self.voters) > 1:
            raise MembershipChangeRefused(
                "a change may add or remove one voter at a time (add a node as a learner, "
                "then promote it)"
            )
        for joining in new_voters - self.voters - {self.id}:
            # A voter that cannot keep up would leave a majority that
            # cannot commit (and a leader that cannot be re-elected).
            progress = self.progress.get(joining)
            low = self.config.election_timeout[0]
            caught_up = (progress is not None and progress.match_index >= self.commit_index
                         and now - progress.last_ack < low
                         and progress.acked_sent >= self._became_leader_at)  # fmt: skip
            if not caught_up:
                raise MembershipChangeRefused(
                    f"{joining} is not a learner that has caught up; add it as a learner first "
                    "and promote it once it holds the log"
                )
        index = self._append_local(encode_configuration(configuration), EntryKind.CONFIG)
        self._broadcast(now, force=False, fresh_only=True)
        return index, self.term

    def log_synced(self, index: int, now: float) -> None:
        """The runner made the log durable up to ``index``."""
        self.synced_index = max(self.synced_index, min(index, self.log.last_index()))
        if self.role is Role.LEADER:
            self._advance_commit(now)

    # ------------------------------------------------- leadership transfer
    def transfer_leadership(self, target: str | None, now: float) -> str:
        """Hand leadership to ``target`` (None: the most up-to-date peer).

        New proposals are refused meanwhile; once the target holds our whole
        log it is told to campaign at once. Given up after the longest
        election timeout, when this node leads on. Returns the target.
        """
        if self.role is not Role.LEADER or self.halted:
            raise NotLeader(self.leader_id)
        if target is None:
            if not self.progress:
                raise CannotTransfer("a cluster of one has nobody to hand leadership to")
            # Answered within a few heartbeats, and answered this term's leader
            # at all: a new leader starts every peer's last_ack at "now", dead
            # ones too.
            window = max(3 * self.config.heartbeat_interval, self.config.election_timeout[0] / 2)
            recent, since = now - window, self._became_leader_at
            heard = sorted(peer for peer, p in self.progress.items() if peer in self.voters
                           and p.last_ack >= recent and p.acked_sent >= since)  # fmt: skip
            if not heard:
                raise CannotTransfer("no follower has answered lately to take over")
            target = max(heard, key=lambda peer: self.progress[peer].match_index)
        if target == self.id:
            self.transfer_to = None  # staying: a transfer under way is called off
            return target
        progress = self.progress.get(target)
        if progress is None or target not in self.voters:
            raise CannotTransfer(f"{target} is not a voting member of this cluster")
        if self.transfer_to != target:
            self.transfer_to = target
            self._transfer_deadline = now + self.config.election_timeout[1]
        if not self._tell_target_if_caught_up(now) and not progress.inflight:
            self._send_append(target, progress, now)
        return target

    def _tell_target_if_caught_up(self, now: float) -> bool:
        """Tell the target to campaign once it holds our whole log; again at
        each answer after that (a TimeoutNow may be lost like any message,
        and a target that already campaigns ignores the old term's)."""
        target = self.transfer_to
        if target is None or self.progress[target].match_index < self.log.last_index():
            return False
        self._send(target, TimeoutNow(self.term, self.id, self._next_rpc()))
        return True

    def _on_timeout_now(self, message: TimeoutNow, now: float) -> None:
        """Our leader hands over to us: campaign now, without a pre-vote
        (the leader stepping aside is the disruption it would guard against)."""
        if message.term != self.term or self.role is Role.LEADER:
            return
        if self.waits_for_leader_after is not None:
            return  # we may lack committed entries: we must not lead
        if not self._may_campaign():
            return  # a learner now (the transfer was called off and it was demoted)
        self._start_election(now, transfer=True)

    # -------------------------------------------------------- replication
    def _on_lost(self, progress: Progress, rpc: int, now: float) -> None:
        """An append went unanswered (timeout, refused, dropped)."""
        if progress.inflight.pop(rpc, None) is None:
            return
        if progress.state is PeerState.REPLICATE:
            self._become_probe(progress)
        elif progress.state is PeerState.PROBE:
            # Nothing learned: probe again from the same place. Falling back
            # to match_index here would send a follower that is ahead of us
            # (a new leader knows no match yet) back to a snapshot.
            progress.inflight.clear()

    @staticmethod
    def _become_probe(progress: Progress) -> None:
        progress.state = PeerState.PROBE
        progress.inflight.clear()
        progress.next_index = progress.match_index + 1

    def _broadcast(self, now: float, force: bool, fresh_only: bool = False) -> None:
        for peer, progress in self.progress.items():
            idle = not progress.inflight
            due = now - progress.last_sent >= self.config.heartbeat_interval
            if progress.state is PeerState.SNAPSHOT:
                if not progress.snapshot_rpc and now >= progress.snapshot_retry_at:
                    self._become_probe(progress)  # the back-off is over: try again
                    self._send_append(peer, progress, now)
                elif idle and (force or due):
                    self._send_heartbeat(peer, progress, now)
                continue
            limit = self.config.max_inflight if progress.state is PeerState.REPLICATE else 1
            has_new = progress.next_index <= self.log.last_index()
            room = len(progress.inflight) < limit
            if (has_new and room) or (idle and (force or (due and not fresh_only))):
                self._send_append(peer, progress, now)

    def _send_append(self, peer: str, progress: Progress, now: float) -> None:
        if progress.state is PeerState.SNAPSHOT:
            self._send_heartbeat(peer, progress, now)
            return
        if progress.next_index < self.log.first_index():
            self._begin_snapshot(peer, progress, now)
            return
        prev = progress.next_index - 1
        prev_term = self.log.term_at(prev)
        assert prev_term is not None
        last = min(self.log.last_index(), prev + self.config.max_entries)
        entries = self.log.entries(prev + 1, last) if last > prev else []
        size = 0
        for n, entry in enumerate(entries):
            size += len(entry.payload)
            if size > self.config.max_bytes and n > 0:
                entries = entries[:n]
                break
        rpc = self._next_rpc()
        progress.inflight[rpc] = (now, prev)
        progress.last_sent = now
        if entries and progress.state is PeerState.REPLICATE:
            progress.next_index = entries[-1].index + 1  # optimistic: pipeline the next batch
        self._send(
            peer,
            AppendRequest(
                self.term, self.id, prev, prev_term, tuple(entries), self.commit_index, rpc
            ),
        )

    def _send_heartbeat(self, peer: str, progress: Progress, now: float) -> None:
        """While a snapshot travels: keep the follower's election timer and
        our check-quorum fed, with an empty append at our log's base."""
        prev = self.log.first_index() - 1
        prev_term = self.log.term_at(prev)
        assert prev_term is not None
        rpc = self._next_rpc()
        progress.inflight[rpc] = (now, prev)
        progress.last_sent = now
        commit = min(self.commit_index, progress.match_index)
        self._send(peer, AppendRequest(self.term, self.id, prev, prev_term, (), commit, rpc))

    def _begin_snapshot(self, peer: str, progress: Progress, now: float) -> None:
        progress.state = PeerState.SNAPSHOT
        progress.inflight.clear()
        progress.snapshot_rpc = self._next_rpc()
        progress.snapshot_seen = now
        progress.last_sent = now
        self._ready.snapshots.append((peer, progress.snapshot_rpc, self.term))

    def _snapshot_failed(self, progress: Progress, now: float) -> None:
        """Wait a little before the next transfer (the follower may be down),
        heartbeating meanwhile so it is not taken for silent."""
        progress.snapshot_rpc = 0
        progress.snapshot_retry_at = now + self.config.snapshot_backoff

    def _advance_commit(self, now: float) -> None:
        # Voters only; this node counts itself while it is one (a leader
        # that removed itself manages the change without counting itself).
        matches = [p.match_index for peer, p in self.progress.items() if peer in self.voters]
        if self.id in self.voters:
            matches.append(self.synced_index)
        matches.sort(reverse=True)
        if len(matches) < self.quorum:
            return
        candidate = matches[self.quorum - 1]
        # Only entries of our own term are committed by counting (Raft §5.4.2).
        if candidate > self.commit_index and self.log.term_at(candidate) == self.term:
            if self.commit_index < self.configuration_index <= candidate:
                self._configuration_committed_at = now
            self.commit_index = candidate
            self._ready.commit_index = candidate
            self._release_pending_reads(now)
            if self.id not in self.voters and self.configuration_index <= candidate:
                self._become_follower(self.term, None, now)  # removed, and that is committed
                return
            self._drop_departed()
        self._release_reads()

    # ----------------------------------------------------------- messages
    def receive(self, message: Message, now: float) -> Message | None:
        """Handle one message; a request gets its response back (to send after
        the Ready it leaves behind is made durable).

        A :class:`SnapshotRequest` answered with None means: install that
        snapshot, then call :meth:`snapshot_installed` for the answer.
        """
        self._now = now
        if self.halted:
            raise NotLeader(None)
        if isinstance(message, (Unreachable, SnapshotProgress)):
            self._on_local(message, now)
            return None
        # A granted pre-vote echoes the term it was asked about; that term
        # is not one anybody holds yet, so it must not move ours.
        pre_vote = isinstance(message, (VoteRequest, VoteResponse)) and message.pre_vote
        granted_pre_vote = isinstance(message, VoteResponse) and pre_vote and message.granted
        if message.term > self.term and not (
            (isinstance(message, VoteRequest) and pre_vote) or granted_pre_vote
        ):
            handed = (isinstance(message, VoteRequest) and message.transfer
                      and message.sender in self.voters)  # fmt: skip
            if isinstance(message, VoteRequest) and not handed and self._leader_is_alive(now):
                # Someone who cannot see our leader wants an election; a live
                # leader exists, so neither our term nor our vote changes.
                return VoteResponse(self.term, self.id, False, False, message.rpc)
            leader = (
                message.sender
                if isinstance(message, (AppendRequest, SnapshotRequest, TimeoutNow))
                else None
            )
            self._become_follower(message.term, leader, now)
        if isinstance(message, VoteRequest):
            return self._on_vote_request(message, now)
        if isinstance(message, VoteResponse):
            self._on_vote_response(message, now)
            return None
        if isinstance(message, AppendRequest):
            return self._on_append(message, now)
        if isinstance(message, AppendResponse):
            self._on_append_response(message, now)
            return None
        if isinstance(message, SnapshotRequest):
            return self._on_snapshot(message, now)
        if isinstance(message, SnapshotResponse):
            self._on_snapshot_response(message, now)
            return None
        if isinstance(message, TimeoutNow):
            self._on_timeout_now(message, now)
            return None
        raise ValueError(f"unknown message {message!r}")

    def _on_local(self, message: Unreachable | SnapshotProgress, now: float) -> None:
        progress = self.progress.get(message.sender)
        if self.role is not Role.LEADER or progress is None:
            return
        in_transfer = progress.state is PeerState.SNAPSHOT and progress.snapshot_rpc == message.rpc
        if isinstance(message, SnapshotProgress):
            if in_transfer:  # the follower took another chunk: it is alive
                progress.snapshot_seen = now
                progress.last_ack = now
        elif in_transfer:
            self._snapshot_failed(progress, now)
        else:
            self._on_lost(progress, message.rpc, now)

    def _leader_is_alive(self, now: float) -> bool:
        if self.role is Role.LEADER:
            return True
        return now - self._last_leader_contact < self.config.election_timeout[0]

    def _on_vote_request(self, request: VoteRequest, now: float) -> VoteResponse:
        if self.waits_for_leader_after is not None:
            return VoteResponse(self.term, self.id, False, request.pre_vote, request.rpc)
        up_to_date = self._log_up_to_date(request.last_index, request.last_term)
        if request.pre_vote:
            granted = (request.term > self.term and up_to_date
                       and not self._leader_is_alive(now))  # fmt: skip
            term = request.term if granted else self.term
            return VoteResponse(term, self.id, granted, True, request.rpc)
        granted = (
            request.term == self.term and self.voted_for in (None, request.sender) and up_to_date
        )
        if granted:
            self._set_term(self.term, request.sender)
            self._election_deadline = now + self._random_timeout()
        return VoteResponse(self.term, self.id, granted, False, request.rpc)

    def _on_vote_response(self, response: VoteResponse, now: float) -> None:
        if not response.granted or response.sender not in self.voters:
            return
        if (response.pre_vote and self.role is Role.PRE_CANDIDATE
                and response.term == self.term + 1):  # fmt: skip
            self._votes.add(response.sender)
            if self._tally() >= self.quorum:
                self._start_election(now)
        elif (not response.pre_vote and self.role is Role.CANDIDATE
              and response.term == self.term):  # fmt: skip
            self._votes.add(response.sender)
            if self._tally() >= self.quorum:
                self._become_leader(now)

    def _heard_from_leader(self, leader: str, now: float) -> None:
        if self.role is not Role.FOLLOWER or self.leader_id != leader:
            self._become_follower(self.term, leader, now)
        waited = self.waits_for_leader_after
        if waited is not None and self.term > waited:
            self.waits_for_leader_after = None  # that leader holds what we lost
        self._last_leader_contact = now
        self._election_deadline = now + self._random_timeout()

    def _on_append(self, request: AppendRequest, now: float) -> AppendResponse:
        if request.term < self.term:
            return AppendResponse(self.term, self.id, False, 0, rpc=request.rpc)
        if self.role is Role.LEADER:
            raise SafetyViolation(f"two leaders in term {self.term}: {self.id}, {request.sender}")
        self._heard_from_leader(request.sender, now)
        prev, prev_term, entries = request.prev_index, request.prev_term, list(request.entries)
        base = self.log.first_index() - 1
        if prev < base:
            # The request starts inside our snapshot. Everything up to `base` is
            # committed and so identical to the leader's; keep only what follows.
            skip = base - prev
            if skip >= len(entries):
                return AppendResponse(
                    self.term, self.id, True, prev + len(entries), rpc=request.rpc
                )
            if entries[skip - 1].term != self.log.term_at(base):
                raise SafetyViolation(f"committed entry {base} differs from the leader's")
            prev, prev_term, entries = base, entries[skip - 1].term, entries[skip:]
        last = self.log.last_index()
        if prev > last:
            return AppendResponse(
                self.term, self.id, False, last, conflict_index=last + 1, rpc=request.rpc
            )
        mine = self.log.term_at(prev)
        if mine != prev_term:
            first = prev
            while first - 1 > base and self.log.term_at(first - 1) == mine:
                first -= 1
            return AppendResponse(
                self.term,
                self.id,
                False,
                prev - 1,
                conflict_index=first,
                conflict_term=mine or 0,
                rpc=request.rpc,
            )
        for position, entry in enumerate(entries):
            if entry.index <= last:
                if self.log.term_at(entry.index) == entry.term:
                    continue  # already have it (a duplicate or a late request)
                if entry.index <= self.commit_index:
                    raise SafetyViolation(f"asked to overwrite committed entry {entry.index}")
                self.log.truncate_after(entry.index - 1)
                self.synced_index = min(self.synced_index, entry.index - 1)
                self._configurations_truncated(entry.index - 1)
            self.log.append(entries[position:])
            self._ready.sync_log = True
            self._configurations_appended(entries[position:])
            break
        match = prev + len(entries)
        # A late request confirms less than we already know is committed;
        # the commit index never goes back.
        commit = min(request.commit, match)
        if commit > self.commit_index:
            self.commit_index = commit
            self._ready.commit_index = commit
        caught_up = match >= request.commit > 0 and self.log.term_at(request.commit) == request.term
        if self.waits_for_leader_after is not None and caught_up:
            self.waits_for_leader_after = None  # we hold everything committed again
        return AppendResponse(self.term, self.id, True, match, rpc=request.rpc)

    def _on_append_response(self, response: AppendResponse, now: float) -> None:
        progress = self.progress.get(response.sender)
        if self.role is not Role.LEADER or progress is None or response.term != self.term:
            return
        sent = progress.inflight.pop(response.rpc, None)
        if sent is None:
            if response.success and response.match_index > progress.match_index:
                progress.match_index = response.match_index  # a late but valid answer
                if progress.state is not PeerState.SNAPSHOT:
                    progress.next_index = max(progress.next_index, response.match_index + 1)
                self._advance_commit(now)
            return
        sent_at, sent_prev = sent
        progress.last_ack = now
        progress.acked_sent = max(progress.acked_sent, sent_at)
        if response.sender not in self.members:
            self._drop_departed()
            if response.sender not in self.progress:
                return
        if progress.state is PeerState.SNAPSHOT:
            # A heartbeat beside a transfer: contact, and maybe a match.
            if response.success and response.match_index > progress.match_index:
                progress.match_index = response.match_index
                self._advance_commit(now)
            self._release_reads()
            return
        if response.success:
            progress.match_index = max(progress.match_index, response.match_index)
            progress.next_index = max(progress.next_index, progress.match_index + 1)
            if progress.state is PeerState.PROBE:
                progress.state = PeerState.REPLICATE
                progress.inflight.clear()  # probes are not pipelined; none is due
            self._advance_commit(now)
            if self.role is not Role.LEADER:
                return  # it removed itself, and that committed
            if response.sender == self.transfer_to:
                self._tell_target_if_caught_up(now)
        elif sent_prev < progress.match_index:
            # Refused a request older than what the follower has since
            # confirmed (the network reordered them): it tells us nothing.
            pass
        else:
            self._on_rejected(progress, response)
        self._release_reads()
        limit = self.config.max_inflight if progress.state is PeerState.REPLICATE else 1
        has_new = progress.next_index <= self.log.last_index()
        if len(progress.inflight) < limit and (has_new or not response.success):
            self._send_append(response.sender, progress, now)

    def _on_rejected(self, progress: Progress, response: AppendResponse) -> None:
        hint = response.conflict_index
        if response.conflict_term:
            # Our last entry of the follower's conflicting term, if we have one.
            index = self.log.last_index()
            while (
                index >= self.log.first_index()
                and (self.log.term_at(index) or 0) > response.conflict_term
            ):
                index -= 1
            if self.log.term_at(index) == response.conflict_term:
                hint = index + 1
        if hint <= progress.match_index:
            # The follower no longer holds entries it acknowledged: its disk
            # lost a damaged tail. Start again from what it does hold.
            progress.match_index = max(0, hint - 1)
        next_index = max(progress.match_index + 1, min(hint, progress.next_index - 1))
        self._become_probe(progress)
        progress.next_index = next_index

    def _on_snapshot(self, request: SnapshotRequest, now: float) -> SnapshotResponse | None:
        """A leader offers a snapshot up to ``last_index``.

        Install it only when it holds entries we do not know are committed;
        otherwise we already have everything it holds (in our log or our own
        snapshot), and installing it would roll our state back.
        """
        if request.term < self.term:
            return SnapshotResponse(self.term, self.id, 0, request.rpc)
        if self.role is Role.LEADER:
            raise SafetyViolation(f"two leaders in term {self.term}: {self.id}, {request.sender}")
        self._heard_from_leader(request.sender, now)
        if request.last_index <= self.commit_index:
            return SnapshotResponse(self.term, self.id, request.last_index, request.rpc)
        return None

    def snapshot_installed(
        self, leader: str, last_index: int, last_term: int, rpc: int, now: float,
        configuration: Configuration | None = None,
    ) -> SnapshotResponse:  # fmt: skip
        """The state now equals the leader's snapshot (made durable first).

        Our log is kept after the snapshot when it agrees with it there;
        otherwise it restarts right after the snapshot. ``configuration``:
        the member list in force at ``last_index``, which the snapshot holds.
        """
        if last_index <= self.commit_index:
            raise SafetyViolation(
                f"snapshot at {last_index} installed over committed entries up to "
                f"{self.commit_index}"
            )
        kept = not (
            self.log.term_at(last_index) != last_term or self.log.first_index() > last_index + 1
        )
        if not kept:
            self.log.reset(last_index + 1, last_term)
            self.synced_index = last_index
        # Without the snapshot's own list: ours as of what we know committed
        # (an uncommitted one may be in the part of the log thrown away).
        earlier = [c for c in self._configurations if c[0] <= min(last_index, self.commit_index)]
        base = configuration if configuration is not None else (earlier[-1][1] if earlier else None)
        later = [c for c in self._configurations if c[0] > last_index] if kept else []
        self._configurations = ([(last_index, base)] if base is not None else []) + later
        self._take_configuration()
        self.commit_index = last_index
        self._ready.commit_index = last_index
        if self.leader_id == leader:
            self._last_leader_contact = now
            self._election_deadline = now + self._random_timeout()
        return SnapshotResponse(self.term, self.id, last_index, rpc)

    def _on_snapshot_response(self, response: SnapshotResponse, now: float) -> None:
        progress = self.progress.get(response.sender)
        if self.role is not Role.LEADER or progress is None or response.term != self.term:
            return
        if progress.state is not PeerState.SNAPSHOT or response.rpc != progress.snapshot_rpc:
            return  # an answer to a transfer we gave up on
        progress.last_ack = now
        progress.snapshot_rpc = 0
        progress.match_index = max(progress.match_index, response.match_index)
        self._become_probe(progress)
        self._advance_commit(now)
        if self.role is Role.LEADER:
            self._send_append(response.sender, progress, now)

    # --------------------------------------------------------------- reads
    def read_index(self, read_id: int, now: float) -> None:
        """Ask to serve a linearizable read; released in Ready.reads as
        (read_id, index) once a quorum confirmed this node still leads."""
        self._now = now
        if self.role is not Role.LEADER:
            raise NotLeader(self.leader_id)
        read = _Read(read_id, self.commit_index, now)
        if self.log.term_at(self.commit_index) != self.term:
            self._pending_reads.append(read)  # wait for our no-op to commit
            return
        self._reads.append(read)
        self._release_reads()
        if self._reads:
            for peer, progress in self.progress.items():
                if not progress.inflight:
                    self._send_append(peer, progress, now)

    def _release_pending_reads(self, now: float) -> None:
        if self._pending_reads and self.log.term_at(self.commit_index) == self.term:
            pending, self._pending_reads = self._pending_reads, []
            for read in pending:
                self._reads.append(_Read(read.read_id, self.commit_index, now))
            for peer, progress in self.progress.items():
                if not progress.inflight:
                    self._send_append(peer, progress, now)

    def _release_reads(self) -> None:
        if not self._reads:
            return
        kept = []
        for read in self._reads:
            confirmed = int(self.id in self.voters) + sum(
                1 for peer, p in self.progress.items()
                if peer in self.voters and p.acked_sent >= read.since
            )  # fmt: skip
            if confirmed >= self.quorum:
                self._ready.reads.append((read.read_id, read.index))
            else:
                kept.append(read)
        self._reads = kept

    # --------------------------------------------------------------- ready
    def has_ready(self) -> bool:
        ready = self._ready
        return bool(ready.save_term or ready.sync_log or ready.messages or ready.snapshots
                    or ready.reads or ready.failed_reads
                    or ready.configuration_changed)  # fmt: skip

    def take_ready(self) -> Ready:
        ready = self._ready
        self._ready = Ready(commit_index=self.commit_index)
        return ready


def configurations_in(
    log: RaftLog, base: tuple[int, Configuration] | None
) -> list[tuple[int, Configuration]]:
    """The member lists in force from ``base`` (the newest snapshot's, or the
    bootstrap list at 0) on, with each CONFIG entry of the log after it."""
    found = [base] if base is not None else []
    after = base[0] if base is not None else 0
    lo, hi = max(after + 1, log.first_index()), log.last_index()
    while lo <= hi:
        batch = log.entries(lo, min(hi, lo + 1023))
        found += [(e.index, decode_configuration(e.payload)) for e in batch
                  if e.kind is EntryKind.CONFIG]  # fmt: skip
        lo += len(batch) or hi + 1
    return found
