"""Which cluster a node belongs to: bootstrap, the stored list, and refusals."""

from __future__ import annotations

from pathlib import Path

import pytest

from replication.membership import (
    ClusterStore,
    Configuration,
    CorruptMembership,
    Member,
    MembershipRefused,
    StartingPoint,
    bootstrap,
    bootstrap_id,
    resolve,
)

THREE = {f"n{i}": f"http://127.0.0.1:{7700 + i}" for i in (1, 2, 3)}
FIVE = {f"n{i}": f"http://127.0.0.1:{7700 + i}" for i in (1, 2, 3, 4, 5)}
FRESH = StartingPoint(has_history=False, voted_for=None)
USED = StartingPoint(has_history=True, voted_for="n2")


def test_nodes_bootstrapped_with_one_list_agree_on_the_id_and_other_lists_do_not() -> None:
    assert bootstrap_id(THREE) == bootstrap_id(dict(reversed(list(THREE.items()))))
    assert bootstrap_id(THREE) != bootstrap_id(FIVE)
    moved = {**THREE, "n3": "http://127.0.0.1:9999"}
    assert bootstrap_id(THREE) != bootstrap_id(moved)
    assert bootstrap(THREE).voters() == ("n1", "n2", "n3")


def test_a_fresh_node_bootstraps_from_peers_or_as_a_cluster_of_one() -> None:
    configuration, why = resolve(None, "n1", THREE["n1"], THREE, FRESH)
    assert configuration == bootstrap(THREE) and why
    alone, why = resolve(None, "n1", "http://127.0.0.1:7700", {}, FRESH)
    assert alone.urls() == {"n1": "http://127.0.0.1:7700"} and why


def test_the_stored_list_wins_and_a_different_one_is_refused() -> None:
    stored = bootstrap(THREE)
    assert resolve(stored, "n3", THREE["n3"], THREE, USED) == (stored, None)
    # Restarted without --peers: still a member of its three-node cluster.
    assert resolve(stored, "n3", "http://127.0.0.1:7703", {}, USED) == (stored, None)
    with pytest.raises(MembershipRefused, match="elect two leaders"):
        resolve(stored, "n3", FIVE["n3"], FIVE, USED)
    with pytest.raises(MembershipRefused, match="do not include n4"):
        resolve(stored, "n4", FIVE["n4"], {}, USED)
    with pytest.raises(MembershipRefused):
        resolve(stored, "n1", THREE["n1"], {**THREE, "n2": "http://127.0.0.1:1"}, USED)
    # After runtime changes grew it to five, the bootstrap --peers still starts it.
    grown = bootstrap(FIVE)
    assert resolve(grown, "n1", FIVE["n1"], THREE, USED, bootstrapped_with=THREE) == (grown, None)
    assert resolve(grown, "n1", FIVE["n1"], FIVE, USED, bootstrapped_with=THREE) == (grown, None)


def test_a_single_node_may_move_but_not_become_a_cluster_by_restart() -> None:
    stored = bootstrap({"n1": "http://127.0.0.1:7700"})
    moved, why = resolve(stored, "n1", "http://127.0.0.1:7800", {}, USED)
    assert moved.urls() == {"n1": "http://127.0.0.1:7800"} and why
    assert moved.cluster_id == stored.cluster_id
    with pytest.raises(MembershipRefused):
        resolve(stored, "n1", THREE["n1"], THREE, USED)


def test_old_data_without_a_list_needs_peers_once() -> None:
    # A leader last voted for itself, a follower moved by appends for nobody:
    # neither says it was alone, so neither may start as a cluster of one.
    for voted_for in ("n2", "n1", None):
        with pytest.raises(MembershipRefused, match="no member list"):
            resolve(None, "n1", THREE["n1"], {}, StartingPoint(True, voted_for))
    adopted, _ = resolve(None, "n1", THREE["n1"], THREE, USED)
    assert adopted == bootstrap(THREE)
    single = {"n1": "http://127.0.0.1:7700"}
    alone, _ = resolve(None, "n1", single["n1"], single, StartingPoint(True, "n1"))
    assert alone.voters() == ("n1",)


def test_force_new_cluster_makes_a_new_cluster_of_one_only_from_data() -> None:
    stored = bootstrap(THREE)
    forced, why = resolve(stored, "n2", THREE["n2"], {}, USED, force_new_cluster=True)
    assert forced.voters() == ("n2",) and forced.cluster_id != stored.cluster_id and why
    with pytest.raises(MembershipRefused, match="empty"):
        resolve(None, "n2", THREE["n2"], {}, FRESH, force_new_cluster=True)
    with pytest.raises(MembershipRefused, match="leave out --peers"):
        resolve(stored, "n2", THREE["n2"], THREE, USED, force_new_cluster=True)


def test_the_store_keeps_a_configuration_and_detects_damage(tmp_path: Path) -> None:
    store = ClusterStore(tmp_path / "cluster")
    assert store.load() is None
    configuration = Configuration(
        "abc", (Member("n1", "http://a"), Member("n2", "http://b", False))
    )
    store.save(configuration)
    assert ClusterStore(tmp_path / "cluster").load() == configuration
    data = bytearray((tmp_path / "cluster").read_bytes())
    data[12] ^= 0xFF
    (tmp_path / "cluster").write_bytes(bytes(data))
    with pytest.raises(CorruptMembership):
        store.load()
