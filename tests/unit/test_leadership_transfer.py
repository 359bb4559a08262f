"""Leadership transfer in the Raft core (thesis §3.10), on the simulator:
the leader brings the target up to date, refuses proposals meanwhile, then
tells it to campaign at once; a transfer that cannot finish is given up."""

from __future__ import annotations

import random

import pytest

from replication.messages import Message, TimeoutNow, VoteRequest
from replication.raft import CannotTransfer, HandingOver, RaftConfig, RaftCore, Role
from tests.raft_sim import Cluster
from wal.memory_store import MemoryLogStore


def _settled(seed: int, size: int = 3) -> Cluster:
    cluster = Cluster(size, seed=seed)
    cluster.run(4.0)
    for n in range(5):
        assert cluster.propose(b"before-%d" % n)
    cluster.run(0.5)
    return cluster


def test_the_target_leads_within_a_fraction_of_an_election_timeout() -> None:
    cluster = _settled(seed=1)
    old = cluster.leader()
    assert old is not None
    target = next(n for n in cluster.ids if n != old.node_id)
    term = old.core.term
    assert cluster.transfer(target) == target
    cluster.run(0.3)  # the election timeout is 1-2 s: this is no timeout
    new = cluster.leader()
    assert new is not None and new.node_id == target
    # One election, no pre-vote round: the term moved by one, and the third
    # node voted although it had heard from a live leader.
    assert new.core.term == term + 1
    assert old.core.role is Role.FOLLOWER
    assert cluster.propose(b"after")
    cluster.run(0.5)
    cluster.final_checks()


def test_a_lagging_target_is_caught_up_first_and_proposals_wait_meanwhile() -> None:
    cluster = _settled(seed=2)
    old = cluster.leader()
    assert old is not None
    target = next(n for n in cluster.ids if n != old.node_id)
    cluster.block(old.node_id, target)
    for n in range(12):
        assert cluster.propose(b"while-cut-%d" % n)
    cluster.run(0.5)
    assert old.core.progress[target].match_index < old.core.log.last_index()
    assert cluster.transfer(target) == target
    with pytest.raises(HandingOver):
        old.core.propose(b"refused", cluster.now)
    cluster.run(0.2)
    assert cluster.leader() is old  # cannot catch up yet: nobody is told
    cluster.heal()
    cluster.run(1.0)
    new = cluster.leader()
    assert new is not None and new.node_id == target
    texts = [payload for _, _, payload in new.applied]
    assert all(b"while-cut-%d" % n in texts for n in range(12))
    cluster.final_checks()


def test_a_transfer_that_cannot_finish_is_given_up_and_the_leader_leads_on() -> None:
    cluster = _settled(seed=3)
    old = cluster.leader()
    assert old is not None
    target = next(n for n in cluster.ids if n != old.node_id)
    cluster.crash(target)
    assert cluster.propose(b"target-misses-this")
    term = old.core.term
    assert cluster.transfer(target) == target
    assert old.core.transfer_to == target
    cluster.run(2.5)  # past the longest election timeout
    assert cluster.leader() is old and old.core.term == term
    assert old.core.transfer_to is None
    assert cluster.propose(b"accepted-again")
    cluster.final_checks()


def test_no_target_picks_the_most_up_to_date_follower_that_answers() -> None:
    cluster = _settled(seed=4, size=5)
    old = cluster.leader()
    assert old is not None
    followers = [n for n in cluster.ids if n != old.node_id]
    behind, down = followers[0], followers[1]
    cluster.block(old.node_id, behind)
    cluster.crash(down)
    for n in range(6):
        assert cluster.propose(b"x-%d" % n)
    cluster.run(1.5)
    chosen = cluster.transfer(None)
    assert chosen in followers[2:]
    cluster.heal()
    cluster.run(1.0)
    new = cluster.leader()
    assert new is not None and new.node_id == chosen
    cluster.final_checks()


def test_a_lost_timeout_now_is_sent_again() -> None:
    cluster = _settled(seed=7)
    old = cluster.leader()
    assert old is not None
    target = next(n for n in cluster.ids if n != old.node_id)
    post = cluster._post
    dropped = []

    def lose_the_first(source: str, to: str, message: Message, is_request: bool,
                       after: float = 0.0) -> None:  # fmt: skip
        if isinstance(message, TimeoutNow) and not dropped:
            dropped.append(message)
            return
        post(source, to, message, is_request, after)

    cluster._post = lose_the_first  # type: ignore[method-assign]
    assert cluster.transfer(target) == target
    cluster.run(0.5)
    assert dropped, "no TimeoutNow was sent"
    new = cluster.leader()
    assert new is not None and new.node_id == target
    cluster.final_checks()


def test_no_target_skips_a_follower_that_never_answered_this_leader() -> None:
    cluster = _settled(seed=8)
    first = cluster.leader()
    assert first is not None
    dead = next(n for n in sorted(cluster.ids) if n != first.node_id)
    alive = next(n for n in cluster.ids if n not in (first.node_id, dead))
    cluster.crash(dead)
    cluster.crash(first.node_id)  # an election among the two that are left...
    cluster.restart(first.node_id)
    deadline = cluster.now + 10
    while cluster.leader() is None and cluster.now < deadline:
        cluster.run(0.05)
    leader = cluster.leader()
    assert leader is not None
    assert cluster.transfer(None) is None  # nobody has answered the new leader yet
    cluster.run(0.2)
    # Soon after: the dead node's last_ack still says "the election", a
    # moment ago, but it never answered this leader.
    chosen = cluster.transfer(None)
    survivor = alive if leader.node_id == first.node_id else first.node_id
    assert chosen == survivor
    cluster.final_checks()


def test_transfers_that_make_no_sense_are_refused() -> None:
    cluster = _settled(seed=5)
    leader = cluster.leader()
    assert leader is not None
    with pytest.raises(CannotTransfer, match="not a voting member"):
        leader.core.transfer_leadership("n9", cluster.now)
    assert leader.core.transfer_leadership(leader.node_id, cluster.now) == leader.node_id
    assert leader.core.transfer_to is None
    other = next(n for n in cluster.ids if n != leader.node_id)
    cluster.crash(other)
    leader.core.transfer_leadership(other, cluster.now)
    assert leader.core.transfer_to == other
    # Asking to stay calls the transfer off: writes are taken again at once.
    leader.core.transfer_leadership(leader.node_id, cluster.now)
    assert leader.core.transfer_to is None
    leader.core.propose(b"taken", cluster.now)
    alone = Cluster(1, seed=6)
    alone.run(0.05)
    single = alone.leader()
    assert single is not None
    with pytest.raises(CannotTransfer, match="nobody"):
        single.core.transfer_leadership(None, alone.now)


def test_timeout_now_is_ignored_from_an_old_term_or_by_a_node_that_lost_its_tail() -> None:
    config = RaftConfig("n2", ("n1", "n3"))
    core = RaftCore(config, MemoryLogStore(), 5, None, 0, 0.0)
    core.receive(TimeoutNow(4, "n1", 1), 1.0)
    assert core.role is Role.FOLLOWER and core.term == 5
    lost = RaftCore(config, MemoryLogStore(), 5, None, 0, 0.0, lost_tail=True)
    lost.receive(TimeoutNow(5, "n1", 1), 1.0)
    assert lost.role is Role.FOLLOWER and lost.term == 5
    fresh = RaftCore(config, MemoryLogStore(), 5, None, 0, 0.0)
    fresh.receive(TimeoutNow(5, "n1", 1), 1.0)
    assert fresh.role is Role.CANDIDATE and fresh.term == 6
    requests = [m for _, m in fresh.take_ready().messages if isinstance(m, VoteRequest)]
    assert requests and all(m.transfer and not m.pre_vote for m in requests)


def test_a_plain_vote_request_still_meets_a_live_leader_but_a_transfer_does_not() -> None:
    config = RaftConfig("n3", ("n1", "n2"))
    core = RaftCore(config, MemoryLogStore(), 3, None, 0, 0.0)
    core.receive(_heartbeat(3), 1.0)  # n1 leads and was just heard
    plain = core.receive(VoteRequest(4, "n2", 0, 0, False, 1), 1.1)
    assert plain is not None and not plain.granted and core.term == 3  # type: ignore[attr-defined]
    handed = core.receive(VoteRequest(4, "n2", 0, 0, False, 2, transfer=True), 1.2)
    assert handed is not None and handed.granted and core.term == 4  # type: ignore[attr-defined]


def _heartbeat(term: int):  # type: ignore[no-untyped-def]
    from replication.messages import AppendRequest

    return AppendRequest(term, "n1", 0, 0, (), 0, 1)


@pytest.mark.parametrize("seed", range(200, 210))
def test_random_transfers_under_faults_keep_safety(seed: int) -> None:
    """Transfers to random targets (some down or cut off) among drops,
    duplicates, partitions and crashes: the simulator's invariants hold
    after every delivery and nothing acknowledged is lost."""
    cluster = Cluster(5 if seed % 2 else 3, seed=seed, drop=0.05, duplicate=0.05,
                      max_delay=0.08, snapshot_every=7)  # fmt: skip
    rng = random.Random(seed)
    moved = 0
    for step in range(40):
        for burst in range(rng.randint(1, 3)):
            cluster.propose(b"t%d-%d-%d" % (seed, step, burst))
        roll = rng.random()
        if roll < 0.35:
            before = cluster.leader()
            target = rng.choice([*cluster.ids, None])
            chosen = cluster.transfer(target)
            if before is not None and chosen not in (None, before.node_id):
                reachable = not cluster.blocked and cluster.nodes[chosen].up
                cluster.run(0.5)
                now = cluster.leader()
                if reachable and now is not None and now.node_id == chosen:
                    moved += 1
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
    # Healed, everyone up: one more transfer must complete.
    cluster.heal()
    for node_id, node in cluster.nodes.items():
        if not node.up:
            cluster.restart(node_id)
    cluster.run(4.0)
    leader = cluster.leader()
    assert leader is not None
    target = rng.choice([n for n in cluster.ids if n != leader.node_id])
    deadline = cluster.now + 10
    while cluster.transfer(target) != target and cluster.now < deadline:
        cluster.run(0.2)  # it may need to answer the leader first
    cluster.run(1.0)
    new = cluster.leader()
    moved += new is not None and new.node_id == target
    assert moved > 0
    cluster.final_checks()
