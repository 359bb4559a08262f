"""The outcomes of keyed writes: bounded in bytes, alike on every replica,
readable from other threads while the applier writes (issue 11)."""

from __future__ import annotations

import gc
import random
import threading
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from node import commands as cmd
from node.idempotency import REMEMBERED_BYTES
from node.store.digest import state_digest
from node.store.snapshot_codec import FORMAT, capture, restore
from node.store.state import Outcome, StateMachine
from wal import EntryKind, LogEntry, SnapshotStore

LIBRARY = "lib-1"


class Log:
    def __init__(self, *machines: StateMachine) -> None:
        self.machines = list(machines)
        self.index = 0

    def apply(self, command: cmd.Command, key: str | None = None) -> Outcome:
        self.index += 1
        entry = LogEntry(self.index, 1, EntryKind.COMMAND, cmd.encode(command, key))
        outcomes = [machine.apply(entry) for machine in self.machines]
        assert all(outcome == outcomes[0] for outcome in outcomes)
        return outcomes[0]


def chunks(count: int, prefix: str, text: str = "t") -> cmd.ChunkBatch:
    vectors = np.ones((count, 2), dtype="<f4").tobytes()
    return cmd.ChunkBatch([f"{prefix}-{n:05d}-{'x' * 24}" for n in range(count)],
                          [text] * count, [n % 7 for n in range(count)], list(range(count)),
                          [1_700_000_000_000_000] * count, [False] * count, 2,
                          vectors)  # fmt: skip


def started(*machines: StateMachine) -> Log:
    log = Log(*machines)
    log.apply(cmd.CreateLibrary(LIBRARY, "one", None, 2, "l2", "brute_force", {}, "m", 1))
    return log


def snapshot_round_trip(machine: StateMachine, tmp_path: Path) -> StateMachine:
    store = SnapshotStore(tmp_path)
    image = capture(machine)
    writer = store.begin(image.index, image.term, {"format": FORMAT})
    image.write(writer)
    writer.commit()
    info, _, records = store.newest_valid() or pytest.fail("no snapshot")
    restored = StateMachine()
    restore(restored, records, info.index, info.term)
    return restored


def test_a_document_of_10000_chunks_is_replayed_whole(tmp_path: Path) -> None:
    machine = StateMachine()
    log = started(machine)
    document = cmd.AddDocument(LIBRARY, "big", cmd.DocumentFields(title="big"),
                               chunks(10_000, "big"), 5)  # fmt: skip
    first = log.apply(document, key="big-doc")
    assert first.error is None and len(first.value["chunk_ids"]) == 10_000
    again = log.apply(document, key="big-doc")
    assert again == first
    assert len(machine.libraries[LIBRARY].documents) == 1
    restored = snapshot_round_trip(machine, tmp_path)
    log.machines.append(restored)
    assert log.apply(document, key="big-doc") == first
    assert state_digest(restored) == state_digest(machine)


def held_by_requests(machine: StateMachine) -> int:
    """Bytes freed when the remembered outcomes are dropped."""
    gc.collect()
    before = tracemalloc.get_traced_memory()[0]
    machine.requests = type(machine.requests)()
    gc.collect()
    return before - tracemalloc.get_traced_memory()[0]


def test_memory_held_stays_under_the_byte_bound() -> None:
    machine = StateMachine()
    log = started(machine)
    log.apply(cmd.AddDocument(LIBRARY, "doc", cmd.DocumentFields(), chunks(0, "none"), 1))
    tracemalloc.start()
    try:
        for n in range(150):
            # each answer lists 1,000 chunk views: about 0.6 MB as Python objects
            outcome = log.apply(cmd.AddChunks(LIBRARY, "doc", chunks(1000, f"w{n}"), 2),
                                key=f"add-{n}")  # fmt: skip
            assert outcome.error is None
        held = held_by_requests(machine)
    finally:
        tracemalloc.stop()
    assert held <= REMEMBERED_BYTES, f"{held / 2**20:.0f} MiB held by remembered outcomes"


def test_a_huge_answer_is_remembered_as_applied_without_its_copy() -> None:
    machine = StateMachine()
    log = started(machine)
    log.apply(cmd.AddDocument(LIBRARY, "doc", cmd.DocumentFields(), chunks(0, "none"), 1))
    # 2,000 chunks of 5,000 characters: an answer of about 10 MB
    batch = chunks(2000, "huge", text="y" * 5000)
    first = log.apply(cmd.AddChunks(LIBRARY, "doc", batch, 2), key="huge")
    assert first.error is None and len(first.value) == 2000
    again = log.apply(cmd.AddChunks(LIBRARY, "doc", batch, 2), key="huge")
    assert again.error == "AlreadyApplied" and "too large to keep" in (again.detail or "")
    assert len(machine.libraries[LIBRARY].chunks) == 2000  # not applied twice


def test_eviction_is_identical_on_replicas(tmp_path: Path) -> None:
    first, second = StateMachine(), StateMachine()
    log = started(first, second)
    log.apply(cmd.AddDocument(LIBRARY, "big", cmd.DocumentFields(), chunks(10_000, "big"), 1))
    rng = random.Random(4)
    keyed = 0
    for n in range(260):
        # each answer lists the document's 10,000 chunk ids: about 380 kB encoded
        log.apply(cmd.UpdateDocument(LIBRARY, "big", {"title": f"t{n}"}, n), key=f"title-{n}")
        for _ in range(rng.randrange(3)):
            keyed += 1
            log.apply(cmd.DeleteDocument(LIBRARY, f"missing-{keyed}"), key=f"missing-{keyed}")
    assert 0 < first.requests.bytes <= REMEMBERED_BYTES
    assert 0 < len(first.requests) < 260 + keyed  # forgotten by bytes, not by count
    assert "title-0" not in first.requests and "title-259" in first.requests
    assert [key for key, _ in first.requests.records()] == [
        key for key, _ in second.requests.records()
    ]
    assert state_digest(first) == state_digest(second)
    restored = snapshot_round_trip(first, tmp_path)
    assert restored.requests.bytes == first.requests.bytes
    assert state_digest(restored) == state_digest(first)
    # and they go on forgetting alike
    log.machines.append(restored)
    for n in range(260, 280):
        log.apply(cmd.UpdateDocument(LIBRARY, "big", {"title": f"t{n}"}, n), key=f"title-{n}")
    assert state_digest(restored) == state_digest(first) == state_digest(second)


def test_readers_on_other_threads_meet_a_busy_applier() -> None:
    machine = StateMachine()
    log = started(machine)
    for n in range(30_000):  # NotFound outcomes: cheap, and remembered all the same
        log.apply(cmd.DeleteDocument(LIBRARY, f"missing-{n}"), key=f"fill-{n}")
    stop = threading.Event()
    failures: list[BaseException] = []

    def applier() -> None:
        n = 0
        while not stop.is_set():
            n += 1
            try:
                log.apply(cmd.DeleteDocument(LIBRARY, f"gone-{n}"), key=f"busy-{n}")
            except BaseException as exc:
                failures.append(exc)
                return

    thread = threading.Thread(target=applier)
    thread.start()
    try:
        for round_ in range(20):
            state_digest(machine)  # what /cluster computes
            machine.remembered(f"fill-{29_999 - round_}")  # the service's check
    except BaseException as exc:
        failures.append(exc)
    finally:
        stop.set()
        thread.join()
    assert failures == []


def test_a_key_sent_again_with_another_request_is_refused_on_every_replica(
    tmp_path: Path,
) -> None:
    """Two different requests under one key can both pass the service's check
    (they race); the second is refused where it is applied, alike everywhere,
    and the first one's memory stays as it was, through a snapshot too."""
    machines = StateMachine(), StateMachine()
    log = started(*machines)
    first = cmd.DeleteDocument(LIBRARY, "d1")
    other = cmd.DeleteDocument(LIBRARY, "d2")

    def logged(command: cmd.Command, fingerprint: str | None) -> Outcome:
        log.index += 1
        payload = cmd.encode(command, "shared-key", fingerprint)
        entry = LogEntry(log.index, 1, EntryKind.COMMAND, payload)
        outcomes = [machine.apply(entry) for machine in machines]
        assert outcomes[0] == outcomes[1]
        return outcomes[0]

    applied = logged(first, "a" * 32)
    assert applied.error == "NotFound"
    index = log.index
    refused = logged(other, "b" * 32)
    assert refused.error == "IdempotencyKeyReused" and f"log index {index}" in (
        refused.detail or ""
    )
    retried = logged(first, "a" * 32)
    assert retried == applied  # the first request's retry still gets its outcome
    assert state_digest(machines[0]) == state_digest(machines[1])
    assert capture(machines[0]).meta()["format"] == 3  # a fingerprint: the newer format
    for machine in (machines[0], snapshot_round_trip(machines[0], tmp_path)):
        assert machine.remembered("shared-key", "a" * 32) == (index, applied)
        reused = machine.remembered("shared-key", "b" * 32)
        assert reused is not None and reused[1].error == "IdempotencyKeyReused"
        # A check without a fingerprint (an entry logged by an older node) answers.
        assert machine.remembered("shared-key") == (index, applied)


def test_snapshots_of_remembered_keys_without_fingerprints_still_load(tmp_path: Path) -> None:
    machine = StateMachine()
    log = started(machine)
    log.apply(cmd.DeleteDocument(LIBRARY, "d1"), "old-key")  # no fingerprint: as before
    image = capture(machine)
    assert all(len(record) == 5 for record in image.requests)
    assert image.meta()["format"] == 2  # what nodes of the previous version read
    restored = snapshot_round_trip(machine, tmp_path)
    assert restored.remembered("old-key", "c" * 32) == machine.remembered("old-key")
    assert state_digest(restored) == state_digest(machine)
