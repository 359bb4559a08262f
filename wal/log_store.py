"""The write-ahead log on disk: a directory of segment files.

Each segment starts with a header (magic, format version, the index of its
first entry, the term of the entry before it, the *synced mark*, and a
checksum of all of these) followed by frames (:mod:`wal.records`). Only the
newest segment is written to.

Appends are not durable until :meth:`FileLogStore.sync` returns; the caller
chooses when to sync (the fsync policy lives with the caller).

The synced mark says how far the newest segment is known to be durable. After
each sync its header is rewritten with the new end, without an fsync of its
own: the next sync carries it to disk along with the next batch, and
:meth:`FileLogStore.close` syncs once more so a clean stop leaves an exact
mark. Because the mark is written only after the fsync that covered those
bytes returned, whatever value reaches the disk, the bytes before it reached
the disk first: the mark never claims more than is durable. It may claim
less; after a crash it can lag by the last batch synced. Truncation lowers the
mark durably before it shortens the file, so the mark never points past the
end of its file either.

On open every segment is scanned and the rule is: only a torn write past what
was synced may be cut.

- Damage before the mark, or a segment that ends before its mark: those bytes
  were durable and this node may have acknowledged them; cutting them could
  lose committed writes, so the log refuses to open (:class:`CorruptLog`).
- Damage after the mark with no valid frame anywhere after it (searched at
  every offset: a damaged length cannot say where the next frame is): a torn
  write; it is cut and reported. Since the mark may lag, the cut may include
  entries synced in the last batch before a crash, so the report says so
  (``OpenReport.cut_may_include_acknowledged``) and such a node must not vote
  until it hears from a leader of a newer term.
- Damage after the mark followed by valid frames: write-back leaves holes
  in unsynced batches (pages reach the disk in any order), so it is cut
  from the damage on, reported the same way.
- A newest segment whose header is all zeros (created, its first page never
  written) is removed. A segment is synced before the next one is created,
  so only the newest can hold unsynced bytes.
- Damage in any segment but the newest: refused.

Open also syncs what it read (a killed process leaves its unsynced writes in
the page cache, and the new process treats them as its log) and moves the mark
to the end of it.

Segments in format version 1 (checksums over the body only, no synced mark)
are refused with a sentence: no data written in that format needs keeping.
"""

from __future__ import annotations

import logging
import os
import struct
import zlib
from array import array
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from wal.fileutil import fsync_dir
from wal.records import (
    FRAME,
    LogEntry,
    ScanResult,
    decode_body,
    encode_entry,
    scan_frames,
)

log = logging.getLogger("shoal.wal")

SEGMENT_MAGIC = b"SHOALWAL"
SEGMENT_VERSION = 2
VERSION_FIELDS = struct.Struct("<8sH")  # magic, version: the same in every format
# magic, version, flags, first_index, prev_term, synced_end; then a checksum of those
HEADER_FIELDS = struct.Struct("<8sHHQQQ")
HEADER = struct.Struct("<8sHHQQQI")
SUFFIX = ".wal"
DEFAULT_SEGMENT_BYTES = 64 << 20
DEFAULT_CACHE_BYTES = 64 << 20
REJOIN = "wipe this node's data directory and let it rejoin from the leader"


class CorruptLog(Exception):
    """The log holds damage that is not a torn tail; it cannot be trusted."""


class LogGap(Exception):
    """Entries were asked for that are not in the log (compacted or absent)."""


@dataclass
class _Segment:
    path: Path
    first_index: int
    prev_term: int
    fd: int
    size: int
    synced_end: int  # the mark last written to the header (see the module docstring)
    offsets: array[int] = field(default_factory=lambda: array("q"))
    terms: array[int] = field(default_factory=lambda: array("q"))

    @property
    def count(self) -> int:
        return len(self.offsets)

    @property
    def last_index(self) -> int:
        return self.first_index + self.count - 1

    def end_of(self, position: int) -> int:
        """Byte offset just after the entry at ``position`` in this segment."""
        if position + 1 < self.count:
            return int(self.offsets[position + 1])
        return self.size


@dataclass(frozen=True)
class OpenReport:
    """What :meth:`FileLogStore.open` found.

    ``cut_may_include_acknowledged`` is True when a torn tail was cut off the
    newest segment. The synced mark can lag the last sync by one batch, so
    the cut may include entries this node had made durable and acknowledged:
    a node that opened with it set must not vote until it hears from a leader
    of a newer term. False means nothing it could have acknowledged was cut.
    """

    segments: int
    entries: int
    torn_bytes_cut: int
    torn_reason: str
    cut_may_include_acknowledged: bool


def _pack_header(first_index: int, prev_term: int, synced_end: int) -> bytes:
    fields = HEADER_FIELDS.pack(
        SEGMENT_MAGIC, SEGMENT_VERSION, 0, first_index, prev_term, synced_end
    )
    return fields + zlib.crc32(fields).to_bytes(4, "little")


def _read_header(name: str, data: bytes) -> tuple[int, int, int]:
    """``(first_index, prev_term, synced_end)`` from a segment's header."""
    magic, version = VERSION_FIELDS.unpack_from(data, 0)
    if magic != SEGMENT_MAGIC:
        raise CorruptLog(f"log segment {name} does not start like a Shoal log segment; {REJOIN}")
    if version != SEGMENT_VERSION:
        raise CorruptLog(
            f"log segment {name} is in log format {version}, which this Shoal does not read "
            f"(it reads only format {SEGMENT_VERSION}); wipe the node's data directory: a "
            "cluster node then rejoins from the leader, a single node starts empty"
        )
    *_, first_index, prev_term, synced_end, checksum = HEADER.unpack_from(data, 0)
    if zlib.crc32(data[: HEADER_FIELDS.size]) != checksum:
        raise CorruptLog(f"log segment {name} has a damaged header; {REJOIN}")
    return first_index, prev_term, synced_end


def _torn_bytes(name: str, data: bytes, scan: ScanResult, synced_end: int, is_last: bool) -> int:
    """How many bytes at the end of a segment are a torn write that may be cut.

    Raises CorruptLog for any other damage (the rules are in the module docstring).
    """
    if scan.bad_offset is None:
        if scan.valid_end < synced_end:
            raise CorruptLog(
                f"log segment {name} ends at byte {scan.valid_end}, before the point this node "
                f"had made durable (byte {synced_end}); entries it may have acknowledged are "
                f"missing: {REJOIN}"
            )
        return 0
    if not is_last:
        raise CorruptLog(
            f"log segment {name} is damaged ({scan.reason}) and newer segments follow it, so "
            f"this is not a torn write and the log cannot be trusted: {REJOIN}"
        )
    if scan.bad_offset < synced_end:
        raise CorruptLog(
            f"log segment {name} is damaged before the point this node had made durable "
            f"(byte {synced_end}): {scan.reason}; entries it may have acknowledged cannot be "
            f"read: {REJOIN}"
        )
    # Past the mark: write-back may have left holes in the last batches
    # (pages reach the disk in any order), so valid records can follow the
    # damage. Everything from the damage on is cut; the report says it may
    # have held acknowledged entries, and the node waits before voting.
    return len(data) - scan.bad_offset


def _segment_name(first_index: int) -> str:
    return f"{first_index:020d}{SUFFIX}"


class FileLogStore:
    """Segmented, checksummed log of :class:`LogEntry` records."""

    def __init__(
        self,
        directory: Path,
        segment_bytes: int = DEFAULT_SEGMENT_BYTES,
        cache_bytes: int = DEFAULT_CACHE_BYTES,
    ) -> None:
        self.directory = directory
        self.segment_bytes = segment_bytes
        # The newest entries, kept decoded: the leader sends them to every
        # follower and the applier applies them, right after they are written.
        self._cache: OrderedDict[int, tuple[LogEntry, int]] = OrderedDict()
        self._cache_bytes = 0
        self.cache_limit = cache_bytes
        self._segments: list[_Segment] = []
        self._dirty: set[int] = set()
        self._dir_dirty = False
        self.bytes_written = 0

    # ----------------------------------------------------------------- open
    def open(self, *, start_index: int = 1, prev_term: int = 0) -> OpenReport:
        """Scan existing segments, repairing a torn tail; create one if none.

        ``start_index``/``prev_term`` describe where an empty log begins (after
        a snapshot, the entry following it).
        """
        self.directory.mkdir(parents=True, exist_ok=True)
        paths = sorted(self.directory.glob("*" + SUFFIX))
        torn_bytes, torn_reason, total, entries_cut = 0, "", 0, False
        for n, path in enumerate(paths):
            is_last = n == len(paths) - 1
            segment, cut, reason = self._load_segment(path, is_last)
            if segment is None:
                torn_bytes, torn_reason = cut, reason
                continue
            if self._segments and segment.first_index != self._segments[-1].last_index + 1:
                raise CorruptLog(
                    f"log segment {path.name} starts at entry {segment.first_index} but the "
                    f"previous segment ends at {self._segments[-1].last_index}"
                )
            if cut:
                torn_bytes, torn_reason, entries_cut = cut, reason, True
            self._segments.append(segment)
            total += segment.count
        if not self._segments:
            self._new_segment(start_index, prev_term)
        self._dirty.update(segment.fd for segment in self._segments)
        self.sync()
        return OpenReport(len(self._segments), total, torn_bytes, torn_reason, entries_cut)

    def _load_segment(self, path: Path, is_last: bool) -> tuple[_Segment | None, int, str]:
        data = path.read_bytes()
        if len(data) < HEADER.size:
            if not is_last:
                raise CorruptLog(f"log segment {path.name} is shorter than its header")
            log.warning("removing log segment %s: its header was never fully written", path.name)
            path.unlink()
            fsync_dir(self.directory)
            return None, len(data), "segment header cut short"
        if is_last and not any(data[: HEADER.size]):
            # A new segment whose first page never reached the disk.
            log.warning("removing log segment %s: its header was never written", path.name)
            path.unlink()
            fsync_dir(self.directory)
            return None, len(data), "segment header never written"
        first_index, prev_term, synced_end = _read_header(path.name, data)
        scan = scan_frames(memoryview(data), HEADER.size)
        cut = _torn_bytes(path.name, data, scan, synced_end, is_last)
        if cut:
            log.warning(
                "cutting a torn tail of %d bytes off log segment %s (%s): it lies past byte %d, "
                "up to which the log was known to be durable",
                cut, path.name, scan.reason, synced_end,
            )  # fmt: skip
        fd = os.open(path, os.O_RDWR)
        segment = _Segment(path, first_index, prev_term, fd, scan.valid_end, synced_end)
        for position, (offset, body) in enumerate(scan.bodies):
            try:
                entry = LogEntry.from_wire(decode_body(body))
            except Exception as exc:
                os.close(fd)
                raise CorruptLog(f"log segment {path.name}: undecodable record: {exc}") from exc
            if entry.index != first_index + position:
                os.close(fd)
                raise CorruptLog(
                    f"log segment {path.name}: record {position} has index {entry.index}, "
                    f"expected {first_index + position}"
                )
            segment.offsets.append(offset)
            segment.terms.append(entry.term)
        if cut:
            os.ftruncate(fd, scan.valid_end)  # made durable by the sync that ends open()
        return segment, cut, scan.reason

    def _new_segment(self, first_index: int, prev_term: int) -> None:
        path = self.directory / _segment_name(first_index)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
        os.pwrite(fd, _pack_header(first_index, prev_term, HEADER.size), 0)
        segment = _Segment(path, first_index, prev_term, fd, HEADER.size, HEADER.size)
        self._segments.append(segment)
        self._dirty.add(fd)
        self._dir_dirty = True

    # ---------------------------------------------------------------- reads
    def first_index(self) -> int:
        return self._segments[0].first_index

    def last_index(self) -> int:
        """Index of the newest entry; ``first_index() - 1`` when empty."""
        return self._segments[-1].last_index

    def last_term(self) -> int:
        return self.term_at(self.last_index()) or 0

    def term_at(self, index: int) -> int | None:
        """Term of the entry at ``index``; the base term just before the first
        entry is known too. None when the log does not cover ``index``."""
        first = self._segments[0]
        if index == first.first_index - 1:
            return first.prev_term
        segment, position = self._locate(index)
        if segment is None:
            return None
        return int(segment.terms[position])

    def _locate(self, index: int) -> tuple[_Segment | None, int]:
        for segment in reversed(self._segments):
            if index >= segment.first_index:
                position = index - segment.first_index
                if position < segment.count:
                    return segment, position
                return None, 0
        return None, 0

    def entries(self, lo: int, hi: int) -> list[LogEntry]:
        """Entries ``lo..hi`` inclusive; raises LogGap if any is missing."""
        if lo > hi:
            return []
        if lo < self.first_index() or hi > self.last_index():
            raise LogGap(
                f"entries {lo}..{hi} are not all in the log "
                f"({self.first_index()}..{self.last_index()})"
            )
        if lo in self._cache and hi in self._cache:
            return [self._cache[index][0] for index in range(lo, hi + 1)]
        result: list[LogEntry] = []
        index = lo
        while index <= hi:
            segment, position = self._locate(index)
            assert segment is not None
            last_position = min(segment.count - 1, position + (hi - index))
            start = int(segment.offsets[position])
            end = segment.end_of(last_position)
            data = memoryview(os.pread(segment.fd, end - start, start))
            offset = 0
            for _ in range(position, last_position + 1):
                size = FRAME.unpack_from(data, offset)[0]
                body = data[offset + FRAME.size : offset + FRAME.size + size]
                result.append(LogEntry.from_wire(decode_body(body)))
                offset += FRAME.size + size
            index += last_position - position + 1
        return result

    # --------------------------------------------------------------- writes
    def append(self, entries: Sequence[LogEntry]) -> None:
        """Write entries after the last one. Not durable until :meth:`sync`."""
        if not entries:
            return
        expected = self.last_index() + 1
        for n, entry in enumerate(entries):
            if entry.index != expected + n:
                raise ValueError(f"append of entry {entry.index} where {expected + n} was due")
        batch: list[tuple[LogEntry, bytes]] = []
        batch_size = 0
        for entry in entries:
            encoded = encode_entry(entry)
            active = self._segments[-1]
            would_be = active.size + batch_size + len(encoded)
            if active.count + len(batch) > 0 and would_be > self.segment_bytes:
                self._write(batch)
                batch, batch_size = [], 0
                # Only the newest segment may hold unsynced bytes: a power cut
                # must never tear one that has a successor.
                self.sync()
                self._new_segment(entry.index, self.last_term())
            batch.append((entry, encoded))
            batch_size += len(encoded)
        self._write(batch)

    def _write(self, batch: list[tuple[LogEntry, bytes]]) -> None:
        if not batch:
            return
        segment = self._segments[-1]
        blob = b"".join(encoded for _, encoded in batch)
        written = 0
        while written < len(blob):
            written += os.pwrite(segment.fd, blob[written:], segment.size + written)
        offset = segment.size
        for entry, encoded in batch:
            segment.offsets.append(offset)
            segment.terms.append(entry.term)
            offset += len(encoded)
        segment.size += len(blob)
        self._dirty.add(segment.fd)
        self.bytes_written += len(blob)
        for entry, encoded in batch:
            self._cache[entry.index] = (entry, len(encoded))
            self._cache_bytes += len(encoded)
        while self._cache_bytes > self.cache_limit and len(self._cache) > 1:
            _, (_, size) = self._cache.popitem(last=False)
            self._cache_bytes -= size

    def _forget_after(self, index: int) -> None:
        """Drop cached entries after ``index`` (they were truncated)."""
        while self._cache and next(reversed(self._cache)) > index:
            _, (_, size) = self._cache.popitem(last=True)
            self._cache_bytes -= size

    def sync(self) -> None:
        """Make everything appended so far durable."""
        active = self._segments[-1] if self._segments else None
        written = active.size if active else 0  # taken first: the mark must not pass the fsync
        for fd in self._dirty:
            os.fdatasync(fd)
        self._dirty.clear()
        if self._dir_dirty:
            fsync_dir(self.directory)
            self._dir_dirty = False
        if active is not None and written != active.synced_end:
            self._write_synced_mark(active, written)
            self._dirty.add(active.fd)  # no fsync now: the next sync carries the mark

    def _write_synced_mark(self, segment: _Segment, end: int) -> None:
        """Record in the header that ``segment`` is durable up to ``end``."""
        os.pwrite(segment.fd, _pack_header(segment.first_index, segment.prev_term, end), 0)
        segment.synced_end = end

    def _lower_synced_mark(self, segment: _Segment, end: int) -> None:
        """Before ``segment`` is cut to ``end``: the lower mark reaches the disk
        first, so the mark never claims bytes that are gone."""
        if segment.synced_end > end:
            self._write_synced_mark(segment, end)
            os.fdatasync(segment.fd)

    def truncate_after(self, index: int) -> None:
        """Drop every entry after ``index`` (durably)."""
        if index >= self.last_index():
            return
        if index < self.first_index() - 1:
            raise LogGap(f"cannot truncate after {index}: the log starts at {self.first_index()}")
        self._forget_after(index)
        while len(self._segments) > 1 and self._segments[-1].first_index > index + 1:
            segment = self._segments.pop()
            os.close(segment.fd)
            self._dirty.discard(segment.fd)
            segment.path.unlink()
            self._dir_dirty = True
        segment = self._segments[-1]
        keep = index - segment.first_index + 1
        new_size = int(segment.offsets[keep]) if keep < segment.count else segment.size
        del segment.offsets[keep:]
        del segment.terms[keep:]
        self._lower_synced_mark(segment, new_size)
        os.ftruncate(segment.fd, new_size)
        segment.size = new_size
        self._dirty.add(segment.fd)
        self.sync()

    def compact_until(self, index: int, keep_entries: int = 0, keep_bytes: int = 0) -> int:
        """Delete whole segments whose entries are all ``<= index``.

        The newest segment is always kept, and so is enough log to hold at
        least ``keep_entries`` entries or ``keep_bytes`` bytes (whichever
        comes first), so followers that fall a little behind catch up from
        the log, not from a snapshot. Returns how many were deleted.
        """
        removed = 0
        held = sum(segment.size for segment in self._segments)
        last = self.last_index()
        while len(self._segments) > 1 and self._segments[0].last_index <= index:
            oldest = self._segments[0]
            if last - oldest.last_index < keep_entries and held - oldest.size < keep_bytes:
                break
            self._delete(self._segments.pop(0))
            held -= oldest.size
            removed += 1
        return removed

    def _delete(self, segment: _Segment) -> None:
        """Remove one segment file durably. One at a time, each removal made
        durable before the next, so a power cut never leaves a gap between
        the segments that remain."""
        os.close(segment.fd)
        self._dirty.discard(segment.fd)
        segment.path.unlink()
        fsync_dir(self.directory)

    def reset(self, start_index: int, prev_term: int) -> None:
        """Discard the whole log; the next entry will be ``start_index``.

        Newest segment first: a power cut part-way leaves the oldest ones,
        a log that ends before the snapshot that replaced it (the engine
        then resets it again on start).
        """
        while self._segments:
            self._delete(self._segments.pop())
        self._dirty.clear()
        self._cache.clear()
        self._cache_bytes = 0
        self._new_segment(start_index, prev_term)
        self.sync()

    def segment_count(self) -> int:
        return len(self._segments)

    def close(self) -> None:
        self.sync()
        self.sync()  # carries the synced mark the first one wrote: a clean stop leaves it exact
        for segment in self._segments:
            os.close(segment.fd)
        self._segments.clear()
