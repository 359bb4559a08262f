"""The backup file's own checks, before any node is involved."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from node.backup import BackupHeader, BadBackup, read_header, write_backup

BODY = [b"snapshot-bytes-" * 1000, b"and-more"]


def _header(body: list[bytes], sha: str | None = None, size: int | None = None) -> BackupHeader:
    data = b"".join(body)
    return BackupHeader(index=7, term=2, digest="d" * 64,
                        sha256=sha or hashlib.sha256(data).hexdigest(),
                        bytes=len(data) if size is None else size, cluster_id="c",
                        node_id="n2", created="2026-12-03T00:00:00Z")  # fmt: skip


def test_a_backup_is_written_whole_and_read_back(tmp_path: Path) -> None:
    out = tmp_path / "b.backup"
    header = _header(BODY)
    write_backup(out, header, iter(BODY))
    read, offset = read_header(out)
    assert read == header
    assert out.read_bytes()[offset:] == b"".join(BODY)


@pytest.mark.parametrize("damage", ["checksum", "short"])
def test_a_body_that_does_not_match_its_header_leaves_no_file(tmp_path: Path, damage: str) -> None:
    out = tmp_path / "b.backup"
    header = _header(BODY, sha="0" * 64) if damage == "checksum" else _header(BODY, size=10**6)
    with pytest.raises(BadBackup, match="nothing was written"):
        write_backup(out, header, iter(BODY))
    assert list(tmp_path.iterdir()) == []


def test_a_file_that_is_not_a_backup_is_named_as_such(tmp_path: Path) -> None:
    other = tmp_path / "notes.txt"
    other.write_text("hello")
    with pytest.raises(BadBackup, match="not a Shoal backup"):
        read_header(other)
    broken = tmp_path / "broken.backup"
    broken.write_bytes(b"SHOALBK1" + (5).to_bytes(4, "little") + b"\xc1\xc1\xc1\xc1\xc1")
    with pytest.raises(BadBackup, match="damaged header"):
        read_header(broken)
