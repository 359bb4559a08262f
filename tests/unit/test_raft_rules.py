"""Raft rules found broken by review, each pinned by a test on the core.

Every test here failed on the core before the rule was fixed.
"""

from __future__ import annotations

import random

import pytest

from replication.messages import (
    AppendRequest,
    AppendResponse,
    SnapshotProgress,
    SnapshotRequest,
    SnapshotResponse,
    Unreachable,
    VoteRequest,
    VoteResponse,
)
from replication.raft import PeerState, RaftConfig, RaftCore, Role, SafetyViolation
from wal import EntryKind, LogEntry
from wal.memory_store import MemoryLogStore

CONFIG = RaftConfig("n1", ("n2", "n3"))
# Check-quorum far away, for tests where the other followers stay silent.
PATIENT = RaftConfig("n1", ("n2", "n3"), election_timeout=(30.0, 60.0))


def entries(lo: int, hi: int, term: int = 1) -> list[LogEntry]:
    return [LogEntry(i, term, EntryKind.COMMAND, b"%d" % i) for i in range(lo, hi + 1)]


def follower(log: MemoryLogStore, term: int = 1, commit: int = 0) -> RaftCore:
    return RaftCore(CONFIG, log, term, None, commit, 0.0, random.Random(1))


def elected(log: MemoryLogStore, term: int = 1, config: RaftConfig = PATIENT) -> RaftCore:
    """A core that just won an election among n1..n3 at ``term + 1``."""
    core = RaftCore(config, log, term, None, 0, -100.0, random.Random(1))
    core.tick(5.0)
    core.receive(VoteResponse(core.term + 1, "n2", True, True, 0), 5.0)
    core.receive(VoteResponse(core.term, "n2", True, False, 0), 5.0)
    assert core.role is Role.LEADER
    core.log_synced(log.last_index(), 5.0)
    return core


def appends_to(core: RaftCore, peer: str) -> list[AppendRequest]:
    """The appends the core wants sent to ``peer`` now."""
    ready = core.take_ready()
    return [m for p, m in ready.messages if p == peer and isinstance(m, AppendRequest)]


def compacted_log(last: int, first: int) -> MemoryLogStore:
    """A log holding ``first..last`` of term 1 (the rest is in a snapshot)."""
    log = MemoryLogStore()
    log.append(entries(1, last))
    log.compact_until(first - 1)
    assert log.first_index() == first
    return log


# ----------------------------------------------------------- follower side
def test_follower_commit_index_never_goes_back_on_a_late_append() -> None:
    log = MemoryLogStore()
    core = follower(log)
    core.receive(AppendRequest(1, "n2", 0, 0, tuple(entries(1, 5)), 5, 1), 1.0)
    assert core.commit_index == 5
    # a resent request with a short batch, carrying a newer commit index
    core.receive(AppendRequest(1, "n2", 0, 0, tuple(entries(1, 1)), 6, 2), 1.1)
    assert core.commit_index == 5


def test_follower_ignores_a_snapshot_it_already_holds() -> None:
    log = MemoryLogStore()
    core = follower(log)
    core.receive(AppendRequest(1, "n2", 0, 0, tuple(entries(1, 10)), 10, 1), 1.0)
    answer = core.receive(SnapshotRequest(1, "n2", 8, 1, 7), 1.1)
    # no install (that would roll 10 applied entries back to 8): answered at once
    assert isinstance(answer, SnapshotResponse) and answer.match_index == 8
    assert log.last_index() == 10 and core.commit_index == 10


def test_follower_installs_a_newer_snapshot_and_keeps_the_log_after_it() -> None:
    log = MemoryLogStore()
    core = follower(log)
    core.receive(AppendRequest(1, "n2", 0, 0, tuple(entries(1, 12)), 3, 1), 1.0)
    assert core.receive(SnapshotRequest(1, "n2", 9, 1, 7), 1.1) is None  # install it
    answer = core.snapshot_installed("n2", 9, 1, 7, 1.2)
    assert answer.match_index == 9 and core.commit_index == 9
    assert log.last_index() == 12  # entries 10..12 agree with the snapshot: kept


def test_follower_restarts_its_log_after_a_snapshot_it_disagrees_with() -> None:
    log = MemoryLogStore()
    log.append(entries(1, 12, term=1))
    core = follower(log, term=2)
    assert core.receive(SnapshotRequest(2, "n2", 9, 2, 7), 1.1) is None
    core.snapshot_installed("n2", 9, 2, 7, 1.2)
    assert (log.first_index(), log.last_index(), log.term_at(9)) == (10, 9, 2)


def test_installing_a_snapshot_over_committed_entries_is_refused() -> None:
    log = MemoryLogStore()
    core = follower(log)
    core.receive(AppendRequest(1, "n2", 0, 0, tuple(entries(1, 10)), 10, 1), 1.0)
    with pytest.raises(SafetyViolation):
        core.snapshot_installed("n2", 8, 1, 7, 1.1)


def test_a_stale_term_snapshot_is_refused() -> None:
    core = follower(MemoryLogStore(), term=3)
    answer = core.receive(SnapshotRequest(2, "n2", 9, 2, 7), 1.0)
    assert isinstance(answer, SnapshotResponse) and answer.term == 3 and answer.match_index == 0


# --------------------------------------------------------------- pre-vote
def test_pre_vote_grant_echoes_the_term_asked_about() -> None:
    core = follower(MemoryLogStore(), term=3)
    answer = core.receive(VoteRequest(4, "n2", 0, 0, True, 1), 10.0)
    assert isinstance(answer, VoteResponse) and answer.granted and answer.term == 4
    assert core.term == 3  # a pre-vote changes nothing


def test_pre_vote_grant_from_an_earlier_round_is_not_counted() -> None:
    core = follower(MemoryLogStore(), term=3)
    core.tick(5.0)
    assert core.role is Role.PRE_CANDIDATE
    # a grant for term 3 (asked when we were at term 2) arrives late
    core.receive(VoteResponse(3, "n2", True, True, 0), 5.1)
    assert core.role is Role.PRE_CANDIDATE and core.term == 3
    core.receive(VoteResponse(4, "n3", True, True, 0), 5.2)  # this round's
    assert core.role is Role.CANDIDATE and core.term == 4


# ------------------------------------------------------------- leader side
def test_new_leader_does_not_send_a_snapshot_after_a_lost_probe() -> None:
    log = compacted_log(last=40, first=31)
    core = elected(log)
    probe = appends_to(core, "n2")
    assert probe, "the new leader probes n2"
    core.receive(Unreachable(0, "n2", probe[0].rpc), 5.1)  # the probe is lost
    for step in range(1, 20):
        core.tick(5.1 + step * 0.2)
    ready = core.take_ready()
    assert not ready.snapshots, "n2 may be ahead of us; only a rejection can say it is not"
    resent = [m for p, m in ready.messages if p == "n2" and isinstance(m, AppendRequest)]
    assert resent and all(m.prev_index >= 40 for m in resent)


def test_snapshot_only_when_the_follower_needs_compacted_entries() -> None:
    log = compacted_log(last=40, first=31)
    core = elected(log)
    (probe,) = appends_to(core, "n2")
    # n2 holds only entries up to 12: it needs 13.., which we compacted
    core.receive(AppendResponse(core.term, "n2", False, 12, conflict_index=13, rpc=probe.rpc), 5.1)
    ready = core.take_ready()
    assert [peer for peer, _, _ in ready.snapshots] == ["n2"]
    assert core.progress["n2"].state is PeerState.SNAPSHOT


def test_snapshot_transfer_is_not_restarted_while_it_makes_progress() -> None:
    log = compacted_log(last=40, first=31)
    core = elected(log)
    (probe,) = appends_to(core, "n2")
    core.receive(AppendResponse(core.term, "n2", False, 0, conflict_index=1, rpc=probe.rpc), 5.1)
    ((_, rpc, _),) = core.take_ready().snapshots
    now = 5.1
    for _ in range(200):  # 40 s of a slow transfer, each chunk acknowledged
        now += 0.2
        core.receive(SnapshotProgress(0, "n2", rpc), now)
        core.tick(now)
        assert not core.take_ready().snapshots, "a second transfer was started"
    assert core.progress["n2"].state is PeerState.SNAPSHOT


def test_check_quorum_hears_a_follower_that_is_taking_a_snapshot() -> None:
    log = compacted_log(last=40, first=31)
    core = elected(log, config=CONFIG)
    ready = core.take_ready()
    probes = {p: m for p, m in ready.messages if isinstance(m, AppendRequest)}
    for peer in ("n2", "n3"):
        reply = AppendResponse(core.term, peer, False, 0, conflict_index=1, rpc=probes[peer].rpc)
        core.receive(reply, 5.1)
    rpcs = {peer: rpc for peer, rpc, _ in core.take_ready().snapshots}
    now = 5.1
    for _ in range(50):  # 10 s: both followers busy receiving snapshots
        now += 0.2
        for peer, rpc in rpcs.items():
            core.receive(SnapshotProgress(0, peer, rpc), now)
        core.tick(now)
        core.take_ready()
    assert core.role is Role.LEADER


def test_stalled_or_failed_transfer_backs_off_then_retries() -> None:
    log = compacted_log(last=40, first=31)
    core = elected(log)
    (probe,) = appends_to(core, "n2")
    core.receive(AppendResponse(core.term, "n2", False, 0, conflict_index=1, rpc=probe.rpc), 5.1)
    ((_, rpc, _),) = core.take_ready().snapshots
    core.receive(Unreachable(0, "n2", rpc), 5.2)
    core.tick(5.5)
    ready = core.take_ready()
    assert not ready.snapshots  # not at once: the follower may be down
    beats = [m for p, m in ready.messages if p == "n2" and isinstance(m, AppendRequest)]
    assert beats and not beats[0].entries  # but it still hears from us
    core.tick(5.2 + PATIENT.snapshot_backoff + 0.01)
    assert [peer for peer, _, _ in core.take_ready().snapshots] == ["n2"]


def test_follower_is_heard_during_a_back_off() -> None:
    """Check-quorum must not depose a leader whose only live follower is
    between two snapshot transfers."""
    log = compacted_log(last=40, first=31)
    core = elected(log, config=CONFIG)
    (probe,) = appends_to(core, "n2")
    core.receive(AppendResponse(core.term, "n2", False, 0, conflict_index=1, rpc=probe.rpc), 5.1)
    now = 5.1
    for _ in range(30):  # n3 is down; n2 refuses every transfer, answers heartbeats
        ready = core.take_ready()
        for peer, rpc, _ in ready.snapshots:
            core.receive(Unreachable(0, peer, rpc), now)
        for peer, message in ready.messages:
            if peer == "n2" and isinstance(message, AppendRequest):
                reply = AppendResponse(core.term, "n2", False, 0, conflict_index=1,
                                       rpc=message.rpc)  # fmt: skip
                core.receive(reply, now)
        now += 0.1
        core.tick(now)
    assert core.role is Role.LEADER


def test_snapshot_answer_moves_the_follower_on() -> None:
    log = compacted_log(last=40, first=31)
    core = elected(log)
    (probe,) = appends_to(core, "n2")
    core.receive(AppendResponse(core.term, "n2", False, 0, conflict_index=1, rpc=probe.rpc), 5.1)
    ((_, rpc, _),) = core.take_ready().snapshots
    core.receive(SnapshotResponse(core.term, "n2", 30, rpc), 5.3)
    progress = core.progress["n2"]
    assert (progress.state, progress.match_index, progress.next_index) == (PeerState.PROBE, 30, 31)
    sent = [m for peer, m in core.take_ready().messages if peer == "n2"]
    assert sent and sent[-1].prev_index == 30  # type: ignore[attr-defined]


def test_stale_rejection_does_not_lower_the_match() -> None:
    log = MemoryLogStore()
    core = elected(log)  # the no-op is entry 1
    for n in range(5):
        core.propose(b"%d" % n, 6.0)
    core.log_synced(log.last_index(), 6.0)
    first = appends_to(core, "n2")[-1]
    # a success makes n2 REPLICATE; then two more requests go out
    core.receive(AppendResponse(core.term, "n2", True, 3, rpc=first.rpc), 6.1)
    core.propose(b"x", 6.2)
    core.propose(b"y", 6.2)
    core.log_synced(log.last_index(), 6.2)
    later = appends_to(core, "n2")
    assert len(later) >= 2
    newest = later[-1]
    core.receive(AppendResponse(core.term, "n2", True, log.last_index(), rpc=newest.rpc), 6.3)
    assert core.progress["n2"].match_index == log.last_index()
    # an earlier request, refused when n2 held less, is answered last
    old = later[0]
    assert old.prev_index < log.last_index()
    core.receive(AppendResponse(core.term, "n2", False, 2, conflict_index=3, rpc=old.rpc), 6.4)
    assert core.progress["n2"].match_index == log.last_index()


def test_answer_to_an_abandoned_transfer_is_ignored() -> None:
    log = compacted_log(last=40, first=31)
    core = elected(log)
    (probe,) = appends_to(core, "n2")
    core.receive(AppendResponse(core.term, "n2", False, 0, conflict_index=1, rpc=probe.rpc), 5.1)
    ((_, old_rpc, _),) = core.take_ready().snapshots
    core.receive(Unreachable(0, "n2", old_rpc), 5.2)  # given up; a new one follows
    core.tick(5.2 + PATIENT.snapshot_backoff + 0.01)
    ((_, new_rpc, _),) = core.take_ready().snapshots
    assert new_rpc != old_rpc
    core.receive(SnapshotResponse(core.term, "n2", 30, old_rpc), 6.5)  # the old one, late
    progress = core.progress["n2"]
    assert progress.state is PeerState.SNAPSHOT and progress.snapshot_rpc == new_rpc


def test_node_that_lost_its_tail_waits_for_a_newer_leader() -> None:
    log = MemoryLogStore()
    log.append(entries(1, 5))
    core = RaftCore(CONFIG, log, 3, None, 0, 0.0, random.Random(1), lost_tail=True)
    core.tick(10.0)
    assert core.role is Role.FOLLOWER  # it does not stand for election
    for pre_vote in (True, False):
        answer = core.receive(VoteRequest(4, "n2", 9, 3, pre_vote, 1), 20.0)
        assert isinstance(answer, VoteResponse) and not answer.granted
    core.receive(AppendRequest(3, "n2", 5, 1, (), 5, 2), 21.0)  # the leader it knew
    assert core.waits_for_leader_after == 3
    core.receive(AppendRequest(5, "n3", 5, 1, (), 5, 3), 22.0)  # a newer one
    assert core.waits_for_leader_after is None
    answer = core.receive(VoteRequest(6, "n2", 9, 5, False, 4), 40.0)
    assert isinstance(answer, VoteResponse) and answer.granted


def test_lost_tail_wait_ends_when_no_leader_ever_appears() -> None:
    """Every node of a cluster cut its tail after a power cut: nobody can
    bring them up to date, so after a while they take part again."""
    core = RaftCore(CONFIG, MemoryLogStore(), 3, None, 0, 0.0, random.Random(1), lost_tail=True)
    core.tick(CONFIG.lost_tail_patience - 1)
    assert core.role is Role.FOLLOWER and core.waits_for_leader_after == 3
    core.tick(CONFIG.lost_tail_patience + 5)
    assert core.waits_for_leader_after is None and core.role is Role.PRE_CANDIDATE


def test_lost_tail_wait_ends_once_the_leader_caught_it_up() -> None:
    """The leader of the same term brings it up to its commit index, at an
    entry of its own term: it holds every committed entry again."""
    log = MemoryLogStore()
    log.append(entries(1, 3))
    core = RaftCore(CONFIG, log, 3, None, 0, 0.0, random.Random(1), lost_tail=True)
    core.receive(AppendRequest(3, "n2", 3, 1, (), 3, 1), 1.0)  # commit 3 is of term 1
    assert core.waits_for_leader_after == 3
    more = (LogEntry(4, 3, EntryKind.NOOP, b""), LogEntry(5, 3, EntryKind.COMMAND, b"x"))
    core.receive(AppendRequest(3, "n2", 3, 1, more, 4, 2), 1.1)
    assert core.waits_for_leader_after is None


def test_lost_tail_wait_lasts_while_a_leader_is_heard() -> None:
    core = RaftCore(CONFIG, MemoryLogStore(), 3, None, 0, 0.0, random.Random(1), lost_tail=True)
    for step in range(40):  # the leader it knew keeps talking, never catches it up
        core.receive(AppendRequest(3, "n2", 5, 3, (), 5, step), 1.0 + step)
        core.tick(1.5 + step)
    assert core.waits_for_leader_after == 3 and core.role is Role.FOLLOWER
    quiet = 40.0 + CONFIG.lost_tail_patience + CONFIG.election_timeout[1] + 1
    core.tick(quiet)  # that leader is gone for longer than the patience
    assert core.waits_for_leader_after is None
