"""Snapshots: a checksummed file per snapshot, made visible by atomic rename.

Layout: an 16-byte header (magic, version, flags) followed by frames (the same
``length | crc32 | msgpack`` framing as the log; since version 2 the checksum
covers the length too, and version 1 files are rejected). The first frame is
the meta record ``{"index", "term", ...}``; the last is ``{"end": n}`` with
``n`` the number of frames before it. A file without its end record, or with
any bad frame, is rejected as a whole.
"""

from __future__ import annotations

import logging
import os
import re
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from wal.fileutil import fsync_dir
from wal.records import decode_body, encode_body, frame, scan_frames

log = logging.getLogger("shoal.snapshots")

SNAPSHOT_MAGIC = b"SHOALSNP"
SNAPSHOT_VERSION = 2
_HEADER = struct.Struct("<8sHHI")
_NAME = re.compile(r"^snapshot-(\d{20})-(\d{20})\.snap$")


class CorruptSnapshot(Exception):
    pass


@dataclass(frozen=True, slots=True, order=True)
class SnapshotInfo:
    index: int
    term: int
    path: Path


class SnapshotWriter:
    """Streams records into a temp file; :meth:`commit` publishes it."""

    def __init__(self, directory: Path, index: int, term: int, meta: dict[str, Any]) -> None:
        self.final_path = directory / f"snapshot-{index:020d}-{term:020d}.snap"
        self.tmp_path = self.final_path.with_name(self.final_path.name + ".tmp")
        self.index, self.term = index, term
        self._file = open(self.tmp_path, "wb")  # noqa: SIM115 - closed in commit/abort
        self._file.write(_HEADER.pack(SNAPSHOT_MAGIC, SNAPSHOT_VERSION, 0, 0))
        self._frames = 0
        self.write({**meta, "index": index, "term": term})

    def write(self, record: object) -> None:
        self._file.write(frame(encode_body(record)))
        self._frames += 1

    def commit(self) -> SnapshotInfo:
        self._file.write(frame(encode_body({"end": self._frames})))
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        os.replace(self.tmp_path, self.final_path)
        fsync_dir(self.final_path.parent)
        return SnapshotInfo(self.index, self.term, self.final_path)

    def abort(self) -> None:
        self._file.close()
        self.tmp_path.unlink(missing_ok=True)


class SnapshotStore:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        for stale in directory.glob("*.snap.tmp"):
            stale.unlink()

    def begin(self, index: int, term: int, meta: dict[str, Any] | None = None) -> SnapshotWriter:
        return SnapshotWriter(self.directory, index, term, meta or {})

    def all(self) -> list[SnapshotInfo]:
        """Snapshots on disk, newest first."""
        found = []
        for path in self.directory.iterdir():
            match = _NAME.match(path.name)
            if match:
                found.append(SnapshotInfo(int(match[1]), int(match[2]), path))
        return sorted(found, reverse=True)

    def read(self, info: SnapshotInfo) -> tuple[dict[str, Any], Iterator[Any]]:
        """Verify the whole file, then return its meta record and the rest."""
        data = memoryview(info.path.read_bytes())
        if len(data) < _HEADER.size:
            raise CorruptSnapshot(f"{info.path.name} is shorter than its header")
        magic, version, _, _ = _HEADER.unpack_from(data, 0)
        if magic != SNAPSHOT_MAGIC or version != SNAPSHOT_VERSION:
            raise CorruptSnapshot(f"{info.path.name} has an unknown header")
        scan = scan_frames(data, _HEADER.size)
        if scan.bad_offset is not None:
            raise CorruptSnapshot(f"{info.path.name}: {scan.reason}")
        if len(scan.bodies) < 2:
            raise CorruptSnapshot(f"{info.path.name} has no records")
        try:  # bytes that pass their checksums may still not be msgpack
            end = decode_body(scan.bodies[-1][1])
            meta = decode_body(scan.bodies[0][1])
        except ValueError as exc:
            raise CorruptSnapshot(f"{info.path.name}: a record does not decode: {exc}") from None
        if not isinstance(end, dict) or end.get("end") != len(scan.bodies) - 1:
            raise CorruptSnapshot(f"{info.path.name} does not end with its end record")
        if not isinstance(meta, dict) or meta.get("index") != info.index:
            raise CorruptSnapshot(f"{info.path.name}: meta record does not match its name")
        bodies = [body for _, body in scan.bodies[1:-1]]
        return meta, (decode_body(body) for body in bodies)

    def newest_valid(self) -> tuple[SnapshotInfo, dict[str, Any], Iterator[Any]] | None:
        for info in self.all():
            try:
                meta, records = self.read(info)
            except CorruptSnapshot as exc:
                log.error("skipping snapshot %s: %s", info.path.name, exc)
                continue
            return info, meta, records
        return None

    def prune(self, keep: int) -> list[SnapshotInfo]:
        """Delete all but the newest ``keep`` snapshots; returns the kept ones."""
        snapshots = self.all()
        for info in snapshots[keep:]:
            info.path.unlink(missing_ok=True)
        if snapshots[keep:]:
            fsync_dir(self.directory)
        return snapshots[:keep]
