"""Listings follow the log, whatever the leaders' clocks said (issue 11).

Ids are UUIDv7 stamped by whichever node led when the write was proposed.
After a leader change to a node whose clock is behind, new ids sort before
older ones; these tests build such commands directly and list through the
service, the way GET /libraries and GET .../documents do.
"""

from __future__ import annotations

import random
import uuid
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import numpy as np
import pytest

from node import commands as cmd
from node.engine import Engine
from node.errors import InvalidRequest
from node.service import Service
from node.settings import Settings
from node.store.digest import state_digest
from node.store.snapshot_codec import FORMAT, capture, restore
from node.store.state import StateMachine
from wal import CorruptLog, EntryKind, LogEntry, SnapshotStore

LIBRARY = "lib-1"
SECOND = 1000  # milliseconds


class SkewedLeaders:
    """Makes UUIDv7-like ids the way a leader with a given clock would."""

    def __init__(self, start_millis: int) -> None:
        self.millis = start_millis
        self.rng = random.Random(7)

    def new_id(self) -> str:
        self.millis += 1
        value = (
            self.millis << 80
            | 0x7 << 76
            | self.rng.getrandbits(12) << 64
            | 0b10 << 62
            | self.rng.getrandbits(62)
        )
        return str(uuid.UUID(int=value))

    def leader_change(self, clock_behind_millis: int) -> None:
        self.millis -= clock_behind_millis


def reader(state: StateMachine) -> Service:
    """The service's read side over a bare state machine."""
    return Service(cast(Engine, SimpleNamespace(state=state)), cast(Any, None))


class Cluster:
    """One state machine fed by a log, read through the service."""

    def __init__(self) -> None:
        self.state = StateMachine()
        self.index = 0
        self.service = reader(self.state)
        self.followers: list[StateMachine] = []

    def apply(self, command: cmd.Command) -> None:
        self.index += 1
        entry = LogEntry(self.index, 1, EntryKind.COMMAND, cmd.encode(command))
        for state in [self.state, *self.followers]:
            outcome = state.apply(entry)
            assert outcome.error is None, outcome.detail

    def add_document(self, document_id: str) -> None:
        vector = np.ones((1, 4), dtype="<f4").tobytes()
        chunks = cmd.ChunkBatch([f"c-{document_id}"], ["t"], [None], [None], [1], [False], 4,
                                vector)  # fmt: skip
        self.apply(cmd.AddDocument(LIBRARY, document_id, cmd.DocumentFields(), chunks, 1))

    def create_library(self, library_id: str) -> None:
        self.apply(cmd.CreateLibrary(library_id, f"name-{library_id}", None, None, "cosine",
                                     "brute_force", {}, "m", 1))  # fmt: skip

    def listed_documents(self, limit: int = 1000) -> list[str]:
        page = self.service.list_documents(LIBRARY, None, limit)
        return [item["id"] for item in page["items"]]


def test_documents_list_in_log_order_across_a_leader_with_a_slow_clock() -> None:
    cluster, clock = Cluster(), SkewedLeaders(1_700_000_000_000)
    cluster.create_library(LIBRARY)
    created = []
    for leader in range(3):
        for _ in range(4):
            created.append(clock.new_id())
            cluster.add_document(created[-1])
        clock.leader_change(clock_behind_millis=5 * SECOND * (leader + 1))
    assert sorted(created) != created  # the clocks really did go backwards
    assert cluster.listed_documents() == created


def test_a_cursor_walk_during_writes_sees_every_document_once() -> None:
    cluster, clock = Cluster(), SkewedLeaders(1_700_000_000_000)
    cluster.create_library(LIBRARY)
    created = []
    for _ in range(6):
        created.append(clock.new_id())
        cluster.add_document(created[-1])
    seen: list[str] = []
    cursor = None
    while True:
        page = cluster.service.list_documents(LIBRARY, cursor, 2)
        seen += [item["id"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
        # Between pages: a new leader whose clock is behind takes writes, and
        # the last document returned (the cursor's) is deleted.
        clock.leader_change(clock_behind_millis=3 * SECOND)
        created.append(clock.new_id())
        cluster.add_document(created[-1])
        cluster.apply(cmd.DeleteDocument(LIBRARY, seen[-1]))
    assert seen == created


def test_libraries_list_in_log_order_and_walk_completely() -> None:
    cluster, clock = Cluster(), SkewedLeaders(1_700_000_000_000)
    created = []
    for _ in range(3):
        created.append(clock.new_id())
        cluster.create_library(created[-1])
    seen: list[str] = []
    cursor = None
    while True:
        page = cluster.service.list_libraries(cursor, 2)
        seen += [item["id"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
        if len(created) < 9:
            clock.leader_change(clock_behind_millis=SECOND)
            created.append(clock.new_id())
            cluster.create_library(created[-1])
    assert sorted(created) != created
    assert seen == created


def walk(service: Service, limit: int) -> list[str]:
    seen: list[str] = []
    cursor = None
    while True:
        page = service.list_documents(LIBRARY, cursor, limit)
        seen += [item["id"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            return seen


def test_a_restored_node_lists_like_a_replayed_one(tmp_path: Path) -> None:
    cluster, clock = Cluster(), SkewedLeaders(1_700_000_000_000)
    cluster.create_library(LIBRARY)
    for leader in range(4):
        for _ in range(5):
            cluster.add_document(clock.new_id())
        clock.leader_change(clock_behind_millis=2 * SECOND)
        if leader == 1:
            cluster.apply(cmd.DeleteDocument(LIBRARY, walk(cluster.service, 100)[3]))
    store = SnapshotStore(tmp_path)
    image = capture(cluster.state)
    writer = store.begin(image.index, image.term, {"format": FORMAT})
    image.write(writer)
    writer.commit()
    info, _, records = store.newest_valid() or pytest.fail("no snapshot")
    restored = StateMachine()
    restore(restored, records, info.index, info.term)
    assert walk(reader(restored), 3) == walk(cluster.service, 3)
    assert state_digest(restored) == state_digest(cluster.state)
    # and both go on the same way after more entries
    cluster.followers.append(restored)
    for _ in range(3):
        cluster.add_document(clock.new_id())
    assert walk(reader(restored), 4) == walk(cluster.service, 4)
    assert state_digest(restored) == state_digest(cluster.state)


def test_cursor_forms() -> None:
    cluster, clock = Cluster(), SkewedLeaders(1_700_000_000_000)
    cluster.create_library(LIBRARY)
    created = [clock.new_id() for _ in range(4)]
    for document_id in created:
        cluster.add_document(document_id)
    # the id of a listed document still works as a cursor (the earlier form)
    page = cluster.service.list_documents(LIBRARY, created[1], 10)
    assert [item["id"] for item in page["items"]] == created[2:]
    # once deleted, its id names no place: a clear 422, not a wrong page
    cluster.apply(cmd.DeleteDocument(LIBRARY, created[1]))
    with pytest.raises(InvalidRequest, match="next_cursor of the previous page"):
        cluster.service.list_documents(LIBRARY, created[1], 10)
    for garbage in ["x.", "-1.abc", "12", "\u0661\u0662.abc"]:
        with pytest.raises(InvalidRequest, match="is neither a next_cursor"):
            cluster.service.list_documents(LIBRARY, garbage, 10)
    with pytest.raises(InvalidRequest, match="id of a library"):
        cluster.service.list_libraries("nope", 10)


def test_a_snapshot_of_the_previous_format_is_refused_with_a_sentence(tmp_path: Path) -> None:
    store = SnapshotStore(tmp_path / "data" / "snapshots")
    writer = store.begin(3, 1, {"format": 1})
    writer.write({"requests": []})
    writer.commit()
    # Made by hand, as by an older Shoal: no member list, so --peers once.
    settings = Settings(data_dir=tmp_path / "data", node_id="n1", peers="n1=http://127.0.0.1:1")
    engine = Engine(settings)
    with pytest.raises(CorruptLog, match="snapshot format 1, which this Shoal does not read"):
        engine.open()
    engine.close()
