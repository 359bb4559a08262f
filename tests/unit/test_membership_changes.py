"""Membership changes in the Raft core, one server at a time (thesis §4.1),
on the simulator: learners that catch up and never campaign, promotion,
removal (of the leader too), the refusals that keep majorities overlapping,
and random changes among faults."""

from __future__ import annotations

import random

import pytest

from replication.membership import Configuration, Member, encode_configuration
from replication.messages import TimeoutNow
from replication.raft import MembershipChangeRefused, RaftConfig, RaftCore, Role
from tests.raft_sim import Cluster
from wal import EntryKind, LogEntry
from wal.memory_store import MemoryLogStore


def _settled(seed: int, size: int = 3, **faults: float) -> Cluster:
    cluster = Cluster(size, seed=seed, **faults)  # type: ignore[arg-type]
    cluster.run(4.0)
    for n in range(5):
        assert cluster.propose(b"before-%d" % n)
    cluster.run(0.5)
    return cluster


def _committed_change(cluster: Cluster, voters: list[str], learners: tuple[str, ...] = ()) -> None:
    deadline = cluster.now + 20
    while not cluster.change(voters, learners):
        assert cluster.now < deadline, "the change was never accepted"
        cluster.run(0.1)
    leader = cluster.leader()
    assert leader is not None
    index = leader.core.configuration_index
    while cluster.now < deadline:
        cluster.run(0.1)
        leader = cluster.leader()
        if leader is not None and leader.core.commit_index >= index:
            return
    raise AssertionError("the change did not commit")


def test_grow_three_to_five_through_learners_then_shrink_back() -> None:
    cluster = _settled(seed=1)
    leaders_seen: set[str] = set()
    for new in ("n4", "n5"):
        cluster.add_node(new)
        voters = sorted(cluster.leader().core.voters)  # type: ignore[union-attr]
        _committed_change(cluster, voters, (new,))
        for n in range(5):
            cluster.propose(b"%s-learning-%d" % (new.encode(), n))
            cluster.run(0.2)
        learner = cluster.nodes[new]
        assert learner.core.role is Role.FOLLOWER and new not in learner.core.voters
        leader = cluster.leader()
        assert leader is not None
        assert learner.core.log.last_index() == leader.core.log.last_index()  # caught up
        _committed_change(cluster, [*voters, new])
        leaders_seen |= {n for n in cluster.leaders.values()}
    leader = cluster.leader()
    assert leader is not None and leader.core.voters == {"n1", "n2", "n3", "n4", "n5"}
    assert leader.core.quorum == 3
    # Five voters: two may be down and writes still commit.
    down = [n for n in cluster.ids if n != leader.node_id][:2]
    for node_id in down:
        cluster.crash(node_id)
    acked = len(cluster.acked)
    assert cluster.propose(b"with-two-down")
    cluster.run(1.0)
    assert len(cluster.acked) > acked
    for node_id in down:
        cluster.restart(node_id)
    cluster.run(2.0)
    # Back to three, one voter at a time.
    for gone in ("n5", "n4"):
        voters = sorted(cluster.leader().core.voters - {gone})  # type: ignore[union-attr]
        _committed_change(cluster, voters)
    cluster.final_checks()
    final = cluster.leader()
    assert final is not None and final.core.voters == {"n1", "n2", "n3"}


def test_a_learner_neither_campaigns_nor_counts_toward_a_majority() -> None:
    cluster = _settled(seed=2)
    cluster.add_node("n4")
    _committed_change(cluster, ["n1", "n2", "n3"], ("n4",))
    leader = cluster.leader()
    assert leader is not None
    others = [n for n in ("n1", "n2", "n3") if n != leader.node_id]
    cluster.crash(others[0])
    cluster.crash(others[1])
    acked = len(cluster.acked)
    cluster.propose(b"needs-a-voter-majority")
    cluster.run(3.0)
    assert len(cluster.acked) == acked  # leader + learner are no majority of three voters
    cluster.crash(leader.node_id)
    cluster.run(10.0)  # many election timeouts: the learner stays a follower
    assert cluster.nodes["n4"].core.role is Role.FOLLOWER
    assert all(holder != "n4" for holder in cluster.leaders.values())
    cluster.final_checks()


def test_a_leader_that_removes_itself_steps_down_once_that_commits() -> None:
    cluster = _settled(seed=3)
    old = cluster.leader()
    assert old is not None
    rest = sorted(set(cluster.ids) - {old.node_id})
    _committed_change(cluster, rest)
    cluster.run(3.0)
    new = cluster.leader()
    assert new is not None and new.node_id in rest
    assert old.core.role is Role.FOLLOWER and old.node_id not in new.core.voters
    term = new.core.term
    cluster.run(10.0)  # the removed node never campaigns, so terms stay put
    assert cluster.leader() is new and new.core.term == term
    assert cluster.propose(b"two-voters-now")
    cluster.final_checks()


def test_changes_that_could_split_majorities_are_refused() -> None:
    cluster = _settled(seed=4)
    leader = cluster.leader()
    assert leader is not None
    cluster.add_node("n4")
    cluster.add_node("n5")

    def proposed(voters: list[str], learners: tuple[str, ...] = ()) -> None:
        members = [Member(n, f"sim://{n}", True) for n in voters]
        members += [Member(n, f"sim://{n}", False) for n in learners]
        leader.core.propose_configuration(Configuration("sim", tuple(members)), cluster.now)

    with pytest.raises(MembershipChangeRefused, match="one voter at a time"):
        proposed(["n1", "n2", "n3", "n4", "n5"])
    with pytest.raises(MembershipChangeRefused, match="at least one voter"):
        proposed([], ("n1",))
    proposed(["n1", "n2", "n3"], ("n4",))
    with pytest.raises(MembershipChangeRefused, match="one change at a time"):
        proposed(["n1", "n2", "n3"], ("n4", "n5"))
    cluster.run(1.0)
    proposed(["n1", "n2", "n3"], ("n4", "n5"))  # the first committed: the next may go
    cluster.final_checks()


def test_a_new_leader_changes_nothing_before_its_own_entry_commits() -> None:
    cluster = _settled(seed=5)
    old = cluster.leader()
    assert old is not None
    cluster.crash(old.node_id)
    deadline = cluster.now + 10
    while cluster.leader() is None and cluster.now < deadline:
        cluster.run(0.01)
    new = cluster.leader()
    assert new is not None
    assert new.core.log.term_at(new.core.commit_index) != new.core.term  # its no-op is pending
    with pytest.raises(MembershipChangeRefused, match="leader is new"):
        new.core.propose_configuration(Configuration("sim", (Member("n1", "x"),)), cluster.now)
    cluster.final_checks()


def test_an_uncommitted_change_that_is_overwritten_is_undone_on_the_follower() -> None:
    cluster = _settled(seed=6)
    leader = cluster.leader()
    assert leader is not None
    follower = next(n for n in cluster.ids if n != leader.node_id)
    third = next(n for n in cluster.ids if n not in (leader.node_id, follower))
    cluster.add_node("n4")
    cluster.block(leader.node_id, third)
    cluster.block(third, leader.node_id)
    assert cluster.change(sorted(leader.core.voters), ("n4",))
    cluster.run(0.05)  # the follower has the change in its log, uncommitted...
    assert "n4" in cluster.nodes[follower].core.members
    cluster.partition([leader.node_id], [follower, third, "n4"])  # ...and the leader is cut off
    cluster.crash(leader.node_id)
    cluster.run(0.0)
    # The follower may win with the change (it is in its log) or the third
    # node without it; either way the lists agree once a leader settles.
    cluster.final_checks()
    final = cluster.leader()
    assert final is not None
    for node_id in final.core.members:
        assert cluster.nodes[node_id].core.members == final.core.members


@pytest.mark.parametrize("seed", range(300, 312))
def test_random_membership_changes_under_faults_keep_safety(seed: int) -> None:
    """Learners added, promoted, demoted and removed (the leader among them)
    one at a time, among drops, duplicates, partitions, crashes, snapshots
    and compaction: the simulator's invariants hold after every delivery,
    and nothing acknowledged is lost on the final members."""
    cluster = _settled(seed, size=3, drop=0.05, duplicate=0.05, max_delay=0.08)
    cluster.snapshot_every = 7
    rng = random.Random(seed)
    spare = ["n4", "n5", "n6"]
    changes = 0
    for step in range(50):
        for burst in range(rng.randint(1, 3)):
            cluster.propose(b"m%d-%d-%d" % (seed, step, burst))
        roll = rng.random()
        leader = cluster.leader()
        if roll < 0.35 and leader is not None:
            voters = set(leader.core.voters)
            learners = set(leader.core.members) - voters
            pick = rng.random()
            if pick < 0.3 and spare:
                new = spare.pop(0)
                cluster.add_node(new)
                learners.add(new)
            elif pick < 0.55 and learners:
                promoted = rng.choice(sorted(learners))
                learners.discard(promoted)
                voters.add(promoted)
            elif pick < 0.8 and len(voters) > 1:
                demoted = rng.choice(sorted(voters))
                voters.discard(demoted)
                if rng.random() < 0.5:
                    learners.add(demoted)
            elif learners:
                learners.discard(rng.choice(sorted(learners)))
            changes += cluster.change(sorted(voters), tuple(sorted(learners)))
        elif roll < 0.45:
            ids = cluster.ids[:]
            rng.shuffle(ids)
            cut = rng.randint(1, len(ids) - 1)
            cluster.partition(ids[:cut], ids[cut:])
        elif roll < 0.55:
            cluster.heal()
        elif roll < 0.62:
            victim = rng.choice(cluster.ids)
            if cluster.nodes[victim].up:
                cluster.crash(victim)
        elif roll < 0.75:
            for node_id, node in cluster.nodes.items():
                if not node.up:
                    cluster.restart(node_id)
        cluster.run(rng.uniform(0.05, 1.0))
    assert changes > 0
    cluster.final_checks(settle=30.0)


# From the adversarial review of the core change: each failed before its fix.


def test_a_late_timeout_now_does_not_make_a_demoted_learner_campaign() -> None:
    cluster = Cluster(3, seed=21)
    cluster.run(4.0)
    for n in range(3):
        cluster.propose(b"x%d" % n)
    cluster.run(1.3)
    leader = cluster.leader()
    assert leader is not None
    target = sorted(set(cluster.ids) - {leader.node_id})[0]
    leader.core.transfer_leadership(target, cluster.now)
    ready = leader.core.take_ready()
    held = [m for _, m in ready.messages if isinstance(m, TimeoutNow)]
    assert held, "the target was not caught up"
    ready.messages = [(p, m) for p, m in ready.messages if not isinstance(m, TimeoutNow)]
    cluster._handle_ready(leader, ready)
    leader.core.transfer_leadership(leader.node_id, cluster.now)  # called off
    voters = sorted(set(cluster.ids) - {target})
    assert cluster.change(voters, (target,))
    cluster.run(0.5)
    learner = cluster.nodes[target]
    assert target not in learner.core.voters
    learner.core.receive(held[0], cluster.now)  # the TimeoutNow arrives late
    cluster._handle_ready(learner, learner.core.take_ready())
    cluster.run(0.3)
    assert learner.core.role is Role.FOLLOWER and cluster.leader() is leader
    cluster.final_checks()


def test_a_voter_that_has_not_caught_up_is_not_added() -> None:
    cluster = Cluster(1, seed=22)
    cluster.run(1.0)
    cluster.add_node("n2")
    cluster.crash("n2")  # down: adding it as a voter would need it for every commit
    assert not cluster.change(["n1", "n2"])
    assert cluster.change(["n1"], ("n2",))  # as a learner it is fine
    cluster.run(1.0)
    assert not cluster.change(["n1", "n2"])  # still down: not caught up
    cluster.restart("n2")
    cluster.run(2.0)
    assert cluster.change(["n1", "n2"])
    cluster.final_checks()


def test_a_removed_follower_learns_it_was_removed_and_stops_campaigning() -> None:
    cluster = _settled(seed=41)
    leader = cluster.leader()
    assert leader is not None
    gone = sorted(set(cluster.ids) - {leader.node_id})[0]
    _committed_change(cluster, sorted(set(cluster.ids) - {gone}))
    cluster.run(3.0)
    removed = cluster.nodes[gone].core
    assert gone not in removed.voters and not removed._may_campaign()
    assert gone not in leader.core.progress  # and the leader stopped sending to it
    term = leader.core.term
    cluster.run(10.0)
    assert removed.term == term and removed.role is Role.FOLLOWER


def test_a_snapshot_without_a_list_never_brings_back_an_uncommitted_one() -> None:
    boot = Configuration("c", tuple(Member(n, "u") for n in ("n1", "n2", "n3")))
    bogus = Configuration("c", (Member("n1", "u"), Member("n2", "u")))  # never committed
    log = MemoryLogStore()
    log.append([LogEntry(1, 1, EntryKind.NOOP, b""),
                LogEntry(2, 2, EntryKind.CONFIG, encode_configuration(bogus))])  # fmt: skip
    core = RaftCore(RaftConfig("n2", ("n1", "n3")), log, 3, None, 1, 0.0,
                    configurations=[(0, boot), (2, bogus)])  # fmt: skip
    assert core.voters == {"n1", "n2"}
    core.snapshot_installed("n3", 5, 3, 9, 1.0)  # the log after it is thrown away
    assert core.voters == {"n1", "n2", "n3"}


def test_a_node_that_ever_had_other_members_is_never_alone_after_losing_its_tail() -> None:
    log = MemoryLogStore()
    alone = Configuration("c", (Member("n1", "u"),))
    core = RaftCore(RaftConfig("n1", ()), log, 2, "n1", 0, 0.0, lost_tail=True,
                    configurations=[(0, alone)], known_members=frozenset({"n1", "n2"}))  # fmt: skip
    assert core.waits_for_leader_after == 2  # it cannot tell what it lost
    never = RaftCore(RaftConfig("n1", ()), MemoryLogStore(), 2, "n1", 0, 0.0, lost_tail=True,
                     configurations=[(0, alone)], known_members=frozenset({"n1"}))  # fmt: skip
    assert never.waits_for_leader_after is None  # a cluster of one all along
