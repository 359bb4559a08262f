"""A follower's snapshot install: chunks in order, a state built aside and
swapped in whole, and a data directory that survives a cut at any step."""

from __future__ import annotations

import shutil
import threading
from pathlib import Path
from typing import Any

import pytest

from node import commands as cmd
from node.engine import Engine
from node.settings import Settings
from node.snapshot_inbox import ChunkOutOfOrder, SnapshotInbox, TransferKey
from node.store.snapshot_codec import capture
from node.store.state import StateMachine
from wal import EntryKind, FileLogStore, LogEntry, SnapshotInfo


def _create(state: StateMachine, index: int, name: str, term: int = 1) -> str:
    library_id = f"lib-{name}"
    command = cmd.CreateLibrary(library_id, name, None, 2, "l2", "brute_force", {},
                                "local-hash-v1", 1)  # fmt: skip
    state.apply(LogEntry(index, term, EntryKind.COMMAND, cmd.encode(command)))
    return library_id


def _engine(path: Path) -> Engine:
    engine = Engine(Settings(data_dir=path, node_id="n1"))
    engine.open()
    return engine


def _leader_snapshot(tmp_path: Path, libraries: int, term: int = 1) -> tuple[Path, int]:
    """A snapshot file as a leader would send it: state after ``libraries`` creates."""
    leader = _engine(tmp_path / "leader")
    for n in range(libraries):
        _create(leader.state, n + 1, f"l{n}", term)
    info = leader._write_snapshot(capture(leader.state))  # noqa: SLF001
    leader.close()
    received = tmp_path / "received.part"
    shutil.copy(info.path, received)
    return received, info.index


def test_readers_never_see_a_half_installed_state(tmp_path: Path) -> None:
    received, index = _leader_snapshot(tmp_path, 200)
    follower = _engine(tmp_path / "follower")
    for n in range(150):  # the follower already has the first 150 libraries
        _create(follower.state, n + 1, f"l{n}")
    prepared = follower.prepare_install(received, index, 1)
    missing: list[str] = []
    stop = threading.Event()

    def reader() -> None:
        while not stop.is_set():
            for n in range(0, 150, 7):
                if follower.state.library(f"lib-l{n}") is None:
                    missing.append(f"lib-l{n}")
            page, _ = follower.state.library_page(None, 1000)
            if len(page) < 150:
                missing.append(f"a page of {len(page)}")

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        follower.commit_install(prepared)
    finally:
        stop.set()
        thread.join()
    assert missing == []
    assert follower.state.applied_index == index and len(follower.state.libraries) == 200
    follower.close()


def test_installed_snapshot_survives_a_restart_before_the_log_is_trimmed(
    tmp_path: Path,
) -> None:
    """Power goes after the snapshot is in place but before the log restarted
    after it: the node comes back from the snapshot."""
    received, index = _leader_snapshot(tmp_path, 30, term=2)
    follower = _engine(tmp_path / "follower")
    for n in range(10):
        _create(follower.state, n + 1, f"old{n}", term=1)
    # its log holds entries of a term the leader's snapshot disagrees with
    follower.log_store.append([LogEntry(i, 1, EntryKind.NOOP, b"") for i in range(1, 41)])
    follower.log_store.sync()
    follower.commit_install(follower.prepare_install(received, index, 2))
    follower.close()
    again = _engine(tmp_path / "follower")
    assert again.state.applied_index == index
    assert again.log_store.first_index() == index + 1  # the disagreeing log was dropped
    assert set(again.state.libraries) == {f"lib-l{n}" for n in range(30)}
    again.close()


def test_a_damaged_transfer_is_refused_and_leaves_the_state_alone(tmp_path: Path) -> None:
    received, index = _leader_snapshot(tmp_path, 5)
    data = bytearray(received.read_bytes())
    data[len(data) // 2] ^= 0x40
    received.write_bytes(bytes(data))
    follower = _engine(tmp_path / "follower")
    _create(follower.state, 1, "mine")
    with pytest.raises(Exception, match="checksum"):
        follower.prepare_install(received, index, 1)
    assert set(follower.state.libraries) == {"lib-mine"} and not received.exists()
    follower.close()


def test_inbox_takes_chunks_only_in_order(tmp_path: Path) -> None:
    inbox = SnapshotInbox(tmp_path)
    first = TransferKey("n2", 3, 100, 3, 7)
    inbox.write(first, 0, b"abc")
    with pytest.raises(ChunkOutOfOrder):
        inbox.write(first, 0 + 10, b"gap")  # a chunk went missing
    with pytest.raises(ChunkOutOfOrder):
        inbox.write(TransferKey("n2", 3, 100, 3, 6), 3, b"old")  # an older transfer
    inbox.write(first, 3, b"def")
    # a new transfer replaces the one under way; the old one cannot go on
    second = TransferKey("n2", 3, 120, 3, 8)
    inbox.write(second, 0, b"XY")
    with pytest.raises(ChunkOutOfOrder):
        inbox.write(first, 6, b"ghi")
    path = inbox.finish(second)
    assert path.read_bytes() == b"XY"
    with pytest.raises(ChunkOutOfOrder):
        inbox.finish(first)


def test_log_store_reset_is_durable(tmp_path: Path) -> None:
    log = FileLogStore(tmp_path / "wal")
    log.open()
    log.append([LogEntry(i, 1, EntryKind.NOOP, b"") for i in range(1, 6)])
    log.sync()
    log.reset(50, 4)
    log.close()
    again = FileLogStore(tmp_path / "wal")
    again.open()
    assert (again.first_index(), again.last_index(), again.term_at(49)) == (50, 49, 4)
    again.close()


def _rewritten(source: SnapshotInfo, directory: Path, extra: list[object],
               meta_body: bytes | None = None) -> Path:  # fmt: skip
    """``source``'s records (checksums right) plus ``extra`` records, or with
    its meta replaced by raw bytes."""
    from wal.records import FRAME, frame
    from wal.snapshots import _HEADER, SNAPSHOT_MAGIC, SNAPSHOT_VERSION, SnapshotStore

    meta, records = SnapshotStore(source.path.parent).read(source)
    writer = SnapshotStore(directory).begin(meta["index"], meta["term"], meta)
    for record in [*records, *extra]:
        writer.write(record)
    info = writer.commit()
    if meta_body is not None:
        with info.path.open("r+b") as file:
            data = file.read()
            header = _HEADER.size
            first = frame(meta_body)
            old_len = FRAME.unpack_from(data, header)[0] + FRAME.size
            rest = data[header + old_len:]
            file.seek(0)
            file.truncate()
            file.write(_HEADER.pack(SNAPSHOT_MAGIC, SNAPSHOT_VERSION, 0, 0) + first + rest)
    received = directory / "received.part"
    shutil.copy(info.path, received)
    return received


@pytest.mark.parametrize(
    "damage",
    [
        {"extra": [{"chunks": "no-such-document", "items": [], "vectors": b""}]},
        {"extra": [5]},
        {"extra": [{"documents": [["d", "not fields", 1, 2, 3]]}]},
        {"meta_body": b"\xc1", "says": "does not decode"},
    ],
)
def test_a_snapshot_that_passes_its_checksums_but_does_not_load_is_damaged(
    tmp_path: Path, damage: dict[str, Any]
) -> None:
    """Found by review: such files reached the leader as a 500 (the status
    poll); they are CorruptSnapshot, and the follower's state is untouched."""
    from wal import CorruptSnapshot

    leader = _engine(tmp_path / "leader")
    _create(leader.state, 1, "l0")
    info = leader._write_snapshot(capture(leader.state))  # noqa: SLF001
    leader.close()
    received = _rewritten(info, tmp_path / "crafted", damage.get("extra", []),
                          damage.get("meta_body"))  # fmt: skip
    follower = _engine(tmp_path / "follower")
    with pytest.raises(CorruptSnapshot, match=damage.get("says")):
        follower.prepare_install(received, info.index, 1)
    assert follower.state.applied_index == 0 and not follower.state.libraries
    assert not received.exists()
    follower.close()
