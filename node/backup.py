"""Backup files: one node's snapshot as of a committed index, checked end to end.

Layout: the magic ``SHOALBK1``, a u32 length and a msgpack header
``{index, term, digest, sha256, cluster_id, node_id, created, bytes}``,
then the snapshot file's bytes as the node wrote them. ``sha256`` covers
those bytes; ``digest`` is the state digest the source computed at
``index``, which a restore recomputes from the restored state.

A restore makes a data directory for a new cluster of one: the snapshot,
a term at the snapshot's, and a member list with a fresh cluster id (the
source cluster's nodes are not its members and are refused).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import struct
import uuid
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

import msgpack

from node.store.digest import state_digest
from node.store.snapshot_codec import READABLE_FORMATS, restore
from node.store.state import StateMachine
from replication.membership import ClusterStore, Configuration, Member
from wal import SnapshotInfo, SnapshotStore, StableStore
from wal.fileutil import fsync_dir

MAGIC = b"SHOALBK1"
_LENGTH = struct.Struct("<I")
# Written for the restored node until it starts and records its own URL.
PLACEHOLDER_URL = "http://127.0.0.1:7700"


class BadBackup(Exception):
    """The file is not a backup, is damaged, or does not restore to its digest."""


@dataclass(frozen=True, slots=True)
class BackupHeader:
    index: int
    term: int
    digest: str
    sha256: str
    bytes: int
    cluster_id: str
    node_id: str
    created: str


def write_backup(out: Path, header: BackupHeader, body: Iterable[bytes]) -> None:
    """Write ``header`` then ``body``; the file appears under ``out`` only
    when the body's length and SHA-256 match the header's."""
    tmp = out.with_name(out.name + ".partial")
    packed = msgpack.packb(asdict(header), use_bin_type=True)
    hasher = hashlib.sha256()
    length = 0
    try:
        with open(tmp, "wb") as file:
            file.write(MAGIC + _LENGTH.pack(len(packed)) + packed)
            for chunk in body:
                hasher.update(chunk)
                length += len(chunk)
                file.write(chunk)
            file.flush()
            os.fsync(file.fileno())
        if length != header.bytes or hasher.hexdigest() != header.sha256:
            raise BadBackup(
                f"the snapshot arrived damaged or cut short ({length} of {header.bytes} bytes, "
                "checksum differs); nothing was written"
            )
        os.replace(tmp, out)
        fsync_dir(out.resolve().parent)
    finally:
        tmp.unlink(missing_ok=True)


def read_header(path: Path) -> tuple[BackupHeader, int]:
    """The header, and where the snapshot bytes start."""
    with open(path, "rb") as file:
        start = file.read(len(MAGIC) + _LENGTH.size)
        if len(start) < len(MAGIC) + _LENGTH.size or not start.startswith(MAGIC):
            raise BadBackup(f"{path} is not a Shoal backup")
        (size,) = _LENGTH.unpack(start[len(MAGIC) :])
        packed = file.read(size)
    try:
        fields = msgpack.unpackb(packed, raw=False)
        header = BackupHeader(**fields)
    except Exception as exc:  # anything the header's bytes may raise
        raise BadBackup(f"{path} has a damaged header: {exc}") from None
    return header, len(MAGIC) + _LENGTH.size + size


def restore_backup(path: Path, data_dir: Path, node_id: str) -> BackupHeader:
    """Make ``data_dir`` (absent or empty) a new cluster of one holding the
    backup's state; checked against its checksum and its digest."""
    header, offset = read_header(path)
    if data_dir.exists() and (not data_dir.is_dir() or any(data_dir.iterdir())):
        raise BadBackup(f"{data_dir} is not an empty directory; restore into a new one")
    # Built beside it and renamed into place once whole: a crash leaves no
    # half-made data directory for serve to start on.
    parent = data_dir.resolve().parent
    parent.mkdir(parents=True, exist_ok=True)
    building = parent / f".{data_dir.name}.restoring-{uuid.uuid4().hex[:8]}"
    snapshots = building / "snapshots"
    snapshots.mkdir(parents=True)
    name = f"snapshot-{header.index:020d}-{header.term:020d}.snap"
    target = snapshots / name
    try:
        _copy_checked(path, offset, header, target)
        info = SnapshotInfo(header.index, header.term, target)
        meta, records = SnapshotStore(snapshots).read(info)
        if meta.get("format") not in READABLE_FORMATS:
            raise BadBackup(f"the backup is in snapshot format {meta.get('format')}; this "
                            f"Shoal reads formats {READABLE_FORMATS}")  # fmt: skip
        state = StateMachine()
        restore(state, records, header.index, header.term)
        if state_digest(state) != header.digest:
            raise BadBackup("the restored state's digest differs from the source's")
        if meta.get("term") != header.term:
            raise BadBackup("the snapshot's term differs from the backup header's")
        StableStore(building / "term").save(header.term, None)
        fresh = Configuration(uuid.uuid4().hex[:16], (Member(node_id, PLACEHOLDER_URL),))
        # In force from the snapshot's index: it overrides the source's list
        # the snapshot holds.
        ClusterStore(building / "cluster").save(fresh, header.index, new_bootstrap=True)
        fsync_dir(building)
        if data_dir.exists():
            data_dir.rmdir()  # empty, checked above
        os.replace(building, data_dir)
        fsync_dir(parent)
    except BaseException:
        shutil.rmtree(building, ignore_errors=True)
        raise
    return header


def _copy_checked(path: Path, offset: int, header: BackupHeader, target: Path) -> None:
    hasher = hashlib.sha256()
    tmp = target.with_name(target.name + ".tmp")
    with open(path, "rb") as source, open(tmp, "wb") as out:
        source.seek(offset)
        while chunk := source.read(4 << 20):
            hasher.update(chunk)
            out.write(chunk)
        out.flush()
        os.fsync(out.fileno())
    if hasher.hexdigest() != header.sha256:
        raise BadBackup(f"{path} is damaged: its snapshot does not match its checksum")
    os.replace(tmp, target)
    fsync_dir(target.parent)
