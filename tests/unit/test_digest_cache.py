"""The state digest: its bytes are fixed (backups carry one that a later
version checks), and `/cluster` pays for a new one only when it is cheap."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from types import SimpleNamespace

import pytest

from node import commands as cmd
from node import digest_cache
from node.digest_cache import DigestCache
from node.store import digest as digest_module
from node.store.digest import state_digest
from node.store.state import StateMachine
from tests.unit.test_state_machine import Log, random_workload

# Taken with the digest as it was before records were packed in slices
# (commit ddcf119): a change here breaks the restore of older backups.
GOLDEN = {
    "brute_force": "04885911f32b3d1b0d38a46a850077602adbc61aba4c81c6aca72ba7ef70b07f",
    "hnsw": "7fbd103905b949c44ce986a9ac56ad38874fb818d33bad4eee6f7e938fd04e07",
}


def filled(index_type: str, steps: int = 300) -> tuple[StateMachine, Log]:
    machine = StateMachine()
    log = Log(machine)
    params = {"M": 8, "ef_construction": 20} if index_type == "hnsw" else {}
    log.apply(cmd.CreateLibrary("lib-1", "one", None, None, "cosine", index_type, params, "m", 1))
    random_workload(random.Random(7), log, steps)
    return machine, log


@pytest.mark.parametrize("index_type", sorted(GOLDEN))
def test_digest_bytes_are_those_older_versions_wrote(index_type: str) -> None:
    machine, _ = filled(index_type)
    assert state_digest(machine) == GOLDEN[index_type]


def test_slices_do_not_change_the_digest(monkeypatch: pytest.MonkeyPatch) -> None:
    machine, _ = filled("brute_force")
    whole = state_digest(machine)
    monkeypatch.setattr(digest_module, "RECORD_SLICE", 3)
    monkeypatch.setattr(digest_module, "VECTOR_SLICE", 5)
    assert state_digest(machine) == whole


def cache_over(machine: StateMachine, lock: threading.Lock | None = None) -> DigestCache:
    held = lock or threading.Lock()
    return DigestCache(machine, lambda: held)


@pytest.fixture
def no_duty(monkeypatch: pytest.MonkeyPatch) -> None:
    """Polls may hash back to back (the share of time is tested on its own)."""
    monkeypatch.setattr(digest_cache, "DUTY", 1.0)


def test_a_cheap_digest_is_current_and_taken_with_the_applier_held(
    monkeypatch: pytest.MonkeyPatch, no_duty: None
) -> None:
    machine, log = filled("brute_force", 60)
    applier = threading.Lock()
    cache = cache_over(machine, applier)
    held_while_hashing: list[bool] = []

    def spy(state: StateMachine) -> str:
        held_while_hashing.append(applier.locked())
        return state_digest(state)

    monkeypatch.setattr(digest_cache, "state_digest", spy)
    first = cache.view()
    assert first == (machine.applied_index, state_digest(machine))
    assert cache.view() == first  # unchanged state: not hashed again
    assert held_while_hashing == [True]
    random_workload(random.Random(8), log, 5)
    assert cache.view() == (machine.applied_index, state_digest(machine))
    assert held_while_hashing == [True, True]


def test_a_costly_digest_is_shown_with_its_index_until_asked_for(
    monkeypatch: pytest.MonkeyPatch, no_duty: None
) -> None:
    machine, log = filled("brute_force", 60)
    cache = cache_over(machine)
    taken = cache.view()
    assert taken is not None and taken[0] == machine.applied_index
    # The state now looks large enough that a poll must not pay for it.
    monkeypatch.setattr(cache, "_per_record", 1.0)
    random_workload(random.Random(9), log, 5)
    assert cache.view() == taken  # the newest, labelled with its own index
    now = cache.view(now=True)
    assert now == (machine.applied_index, state_digest(machine)) != taken
    assert cache.view() == now


def test_nothing_is_shown_before_the_first_costly_digest(monkeypatch: pytest.MonkeyPatch) -> None:
    machine, _ = filled("brute_force", 60)
    monkeypatch.setattr(digest_cache, "SECONDS_PER_RECORD", 1.0)
    cache = cache_over(machine)
    assert cache.view() is None
    assert cache.view(now=True) == (machine.applied_index, state_digest(machine))


def test_documents_without_chunks_count_toward_the_cost(monkeypatch: pytest.MonkeyPatch) -> None:
    machine = StateMachine()
    log = Log(machine)
    log.apply(cmd.CreateLibrary("lib-1", "one", None, None, "cosine", "brute_force", {}, "m", 1))
    empty = cmd.ChunkBatch([], [], [], [], [], [], 8, b"")
    for n in range(50):
        log.apply(cmd.AddDocument("lib-1", f"d{n}", cmd.DocumentFields(), empty, n))
    assert not machine.libraries["lib-1"].chunks
    monkeypatch.setattr(digest_cache, "SECONDS_PER_RECORD", digest_cache.INLINE_BUDGET / 10)
    assert cache_over(machine).view() is None


def test_the_measured_cost_decides(monkeypatch: pytest.MonkeyPatch, no_duty: None) -> None:
    """A digest that took long makes the next polls show it rather than pay again."""
    machine, log = filled("brute_force", 1200)
    assert sum(len(library.chunks) for library in machine.libraries.values()) >= 1000
    cache = cache_over(machine)
    clock = iter([0.0, 10.0])
    _clock(monkeypatch, lambda: next(clock))
    taken = cache.view()
    random_workload(random.Random(10), log, 5)
    assert cache.view() == taken


def test_polls_spend_at_most_a_share_of_the_time_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    machine, log = filled("brute_force", 60)
    cache = cache_over(machine)
    clock = iter([0.0, 0.05])  # a digest that took 50 ms
    _clock(monkeypatch, lambda: next(clock))
    taken = cache.view()
    random_workload(random.Random(11), log, 5)
    assert cache.view() == taken  # within the next 450 ms: not again
    monkeypatch.setattr(cache, "_not_before", 0.0)
    _clock(monkeypatch, iter([1.0, 1.01]).__next__)
    assert cache.view() == (machine.applied_index, state_digest(machine))


def test_a_poll_does_not_wait_for_a_busy_applier() -> None:
    machine, log = filled("brute_force", 60)
    applier = threading.Lock()
    cache = cache_over(machine, applier)
    taken = cache.view()
    random_workload(random.Random(12), log, 5)
    with applier:  # applying a long entry
        assert cache.view() == taken
    waiter = threading.Thread(target=lambda: results.append(cache.view(now=True)))
    results: list[object] = []
    with applier:
        waiter.start()
        waiter.join(0.2)
        assert waiter.is_alive() and not results  # ?digest=now waits for it
    waiter.join(5)
    assert results == [(machine.applied_index, state_digest(machine))]


def test_a_digest_of_a_replaced_state_is_not_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    machine, _ = filled("brute_force", 60)
    cache = cache_over(machine)

    def replaced_meanwhile(state: StateMachine) -> str:
        cache.forget()  # a snapshot installed while this one was hashed
        return state_digest(state)

    monkeypatch.setattr(digest_cache, "state_digest", replaced_meanwhile)
    shown = cache.view()
    assert shown == (machine.applied_index, state_digest(machine))
    assert cache._newest is None


def _clock(monkeypatch: pytest.MonkeyPatch, perf_counter: Callable[[], float]) -> None:
    """digest_cache's clock only: other threads of the test process (a
    Temporal worker, say) read the real time.perf_counter meanwhile."""
    clock = SimpleNamespace(perf_counter=perf_counter, monotonic=time.monotonic)
    monkeypatch.setattr(digest_cache, "time", clock)
