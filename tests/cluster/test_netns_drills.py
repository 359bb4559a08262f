"""Failover drills with partitions made by the kernel: network namespaces and
iptables, not our own transport.

Each drill runs the register workload from the tests' namespace, applies a
packet filter, heals, and ends with the history check: every register
linearizable (no acknowledged write lost, none applied twice, no stale
linearizable read), one leader per term, terms never back, equal digests.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.cluster.register_workload import (
    LeaderMonitor,
    RegisterWorkload,
    make_registers,
    verify,
)
from tests.netns import NamespaceCluster, available

pytestmark = [
    pytest.mark.cluster,
    pytest.mark.skipif(available() is not None, reason=str(available())),
]
RECOVERY_BOUND = 15.0  # seconds from the fault to the next acknowledged write


@pytest.fixture
def netns_cluster(tmp_path: Path) -> Iterator[NamespaceCluster]:
    cluster = NamespaceCluster(tmp_path / "ns", 3, tag=f"sh{int(time.time() * 1000) % 100000}")
    try:
        cluster.build()
        cluster.start()
        yield cluster
    finally:
        cluster.close()


def drill(
    cluster: NamespaceCluster,
    fault: Callable[[str], None],
    hold: float = 4.0,
    must_recover: bool = True,
) -> dict[str, object]:
    keys = make_registers(cluster, 3)
    monitor = LeaderMonitor(cluster).start()
    workload = RegisterWorkload(cluster, keys, clients=3, seed=3).start()
    try:
        time.sleep(1.5)
        leader = cluster.leader()
        faulted_at = time.monotonic()
        fault(leader)
        time.sleep(hold)
        if must_recover:
            deadline = faulted_at + RECOVERY_BOUND
            while workload.first_ok_write_after(faulted_at) is None:
                assert time.monotonic() < deadline, "no write was acknowledged after the fault"
                time.sleep(0.1)
        cluster.heal()
        time.sleep(2.0)
    finally:
        ops = workload.stop()
        cluster.heal()
    result = verify(cluster, ops, keys, monitor)
    monitor.stop()
    return result


def test_isolated_leader(netns_cluster: NamespaceCluster) -> None:
    def isolate(leader: str) -> None:
        for other in netns_cluster.addresses:
            if other != leader:
                netns_cluster.drop_between(leader, other)

    drill(netns_cluster, isolate)


def test_client_stuck_with_the_minority(netns_cluster: NamespaceCluster) -> None:
    """The client reaches only the old leader, cut off from the others: no
    write it sends may be acknowledged, no read it makes may be stale."""

    def minority(leader: str) -> None:
        others = [n for n in netns_cluster.addresses if n != leader]
        netns_cluster.split_net([[leader], others], client_with=[leader])

    drill(netns_cluster, minority, hold=5.0, must_recover=False)


def test_client_with_the_majority(netns_cluster: NamespaceCluster) -> None:
    def majority(leader: str) -> None:
        others = [n for n in netns_cluster.addresses if n != leader]
        netns_cluster.split_net([[leader], others], client_with=others)

    drill(netns_cluster, majority)


def test_leader_deaf_to_its_followers(netns_cluster: NamespaceCluster) -> None:
    """One-way: the leader's appends arrive, the answers do not."""

    def deafen(leader: str) -> None:
        for other in netns_cluster.addresses:
            if other != leader:
                netns_cluster.drop_from(leader, other)

    drill(netns_cluster, deafen)


def test_random_packet_loss(netns_cluster: NamespaceCluster) -> None:
    drill(netns_cluster, lambda _: netns_cluster.lossy_links(0.2), hold=6.0)


def test_flapping_partitions(netns_cluster: NamespaceCluster) -> None:
    def flap(leader: str) -> None:
        ids = list(netns_cluster.addresses)
        for round_ in range(6):
            alone = ids[round_ % len(ids)]
            netns_cluster.split_net([[alone], [n for n in ids if n != alone]])
            time.sleep(0.8)
            netns_cluster.clear_filters()
            time.sleep(0.4)

    drill(netns_cluster, flap, hold=1.0)
