"""A FUSE file system that forgets what was not fsynced, as a power cut does.

    python -m tests.powerfs BACKING MOUNTPOINT SEED [FSYNC_SECONDS]

A pass-through to BACKING, except that file contents written through it stay
in memory (like the page cache) until ``fsync``/``fdatasync`` of that file
writes them to BACKING and syncs them there. Writing anything to the file
``/.powercut`` cuts the power: of every file's unsynced contents, each
changed 4 KiB page reaches the disk or not, at random and independently,
and a file that grew keeps its new size (zeros where pages never arrived)
or its old one.
Stop the processes using the mount before cutting.

FSYNC_SECONDS makes every fsync that long (a slow disk), so a cut is likely
to find writes that were made but not yet synced.

Directory operations (create, rename, unlink, mkdir) go straight to BACKING:
this models lost data, not lost directory entries. Single-threaded.
"""

from __future__ import annotations

import errno
import os
import random
import sys
import time
from typing import Any

import mfusepy as fuse

CUT_FILE = "/.powercut"
PAGE = 4096


class PowerFS(fuse.Operations):  # type: ignore[misc]
    use_ns = True

    def __init__(self, backing: str, seed: int, fsync_seconds: float = 0.0) -> None:
        self.backing = os.path.realpath(backing)
        self.fsync_seconds = fsync_seconds
        self.rng = random.Random(seed)
        self.unsynced: dict[int, bytearray] = {}  # inode -> whole current contents
        self.handles: dict[int, tuple[int, int]] = {}  # fh -> (backing fd, inode)
        self.next_fh = 1
        self.cuts = 0

    # ------------------------------------------------------------ helpers
    def _real(self, path: str) -> str:
        return os.path.join(self.backing, path.lstrip("/"))

    def _open_handle(self, real: str) -> int:
        fd = os.open(real, os.O_RDWR)
        fh = self.next_fh
        self.next_fh += 1
        self.handles[fh] = (fd, os.fstat(fd).st_ino)
        return fh

    def _contents(self, fd: int, inode: int) -> bytearray:
        """The file's current contents, kept in memory from now on."""
        held = self.unsynced.get(inode)
        if held is None:
            size = os.fstat(fd).st_size
            held = bytearray(os.pread(fd, size, 0)) if size else bytearray()
            self.unsynced[inode] = held
        return held

    def _cut_power(self) -> None:
        """Each 4 KiB page that changed since the last fsync reached the disk or
        not, independently (write-back has no order); a grown file kept its
        new size or not; pages of a new size that never arrived read as zeros."""
        lost = sum(len(contents) for contents in self.unsynced.values())
        print(f"power cut {self.cuts + 1}: {len(self.unsynced)} files had unsynced contents "
              f"({lost} bytes in memory)", file=sys.stderr, flush=True)  # fmt: skip
        for inode, contents in self.unsynced.items():
            real = self._path_of(inode)
            if real is None:
                continue
            with open(real, "r+b") as handle:
                durable = handle.read()
                size = len(contents) if self.rng.random() < 0.5 else len(durable)
                after = bytearray(durable[:size].ljust(size, b"\0"))
                for start in range(0, size, PAGE):
                    new = contents[start : start + PAGE]
                    if new != durable[start : start + PAGE] and self.rng.random() < 0.5:
                        after[start : start + len(new)] = new[: size - start]
                handle.seek(0)
                handle.write(after)
                handle.truncate(size)
                handle.flush()
                os.fsync(handle.fileno())
        self.unsynced.clear()
        self.cuts += 1

    def _path_of(self, inode: int) -> str | None:
        for directory, _, files in os.walk(self.backing):
            for name in files:
                real = os.path.join(directory, name)
                if os.stat(real).st_ino == inode:
                    return real
        return None

    # ---------------------------------------------------------- metadata
    def getattr(self, path: str, fh: int | None = None) -> dict[str, Any]:
        if path == CUT_FILE:
            return {"st_mode": 0o100600, "st_nlink": 1, "st_size": 0}
        try:
            st = os.lstat(self._real(path))
        except FileNotFoundError:
            raise fuse.FuseOSError(errno.ENOENT) from None
        attrs = {key: getattr(st, key) for key in ("st_atime", "st_ctime", "st_gid", "st_mode",
                 "st_mtime", "st_nlink", "st_size", "st_uid", "st_ino")}  # fmt: skip
        held = self.unsynced.get(st.st_ino)
        if held is not None:
            attrs["st_size"] = len(held)
        return attrs

    def readdir(self, path: str, fh: int) -> list[str]:
        return [".", "..", *os.listdir(self._real(path))]

    def mkdir(self, path: str, mode: int) -> int:
        os.mkdir(self._real(path), mode)
        return 0

    def rmdir(self, path: str) -> int:
        os.rmdir(self._real(path))
        return 0

    def unlink(self, path: str) -> int:
        real = self._real(path)
        inode = os.stat(real).st_ino
        os.unlink(real)
        self.unsynced.pop(inode, None)
        return 0

    def rename(self, old: str, new: str) -> int:
        target = self._real(new)
        if os.path.exists(target):
            self.unsynced.pop(os.stat(target).st_ino, None)
        os.rename(self._real(old), target)
        return 0

    def chmod(self, path: str, mode: int) -> int:
        os.chmod(self._real(path), mode)
        return 0

    def utimens(self, path: str, times: Any = None) -> int:
        os.utime(self._real(path), ns=times) if times else os.utime(self._real(path))
        return 0

    def statfs(self, path: str) -> dict[str, int]:
        st = os.statvfs(self.backing)
        return {key: getattr(st, key) for key in ("f_bavail", "f_bfree", "f_blocks", "f_bsize",
                "f_favail", "f_ffree", "f_files", "f_flag", "f_frsize", "f_namemax")}  # fmt: skip

    def fsyncdir(self, path: str, datasync: int, fh: int) -> int:
        return 0  # directory operations are durable at once here

    # ------------------------------------------------------------- files
    def create(self, path: str, mode: int, fi: Any = None) -> int:
        if path == CUT_FILE:
            self._cut_power()
            return 0
        real = self._real(path)
        os.close(os.open(real, os.O_WRONLY | os.O_CREAT, mode))
        return self._open_handle(real)

    def open(self, path: str, flags: int) -> int:
        if path == CUT_FILE:
            self._cut_power()
            return 0
        fh = self._open_handle(self._real(path))
        if flags & os.O_TRUNC:
            fd, inode = self.handles[fh]
            self._contents(fd, inode).clear()
        return fh

    def read(self, path: str, size: int, offset: int, fh: int) -> bytes:
        fd, inode = self.handles[fh]
        held = self.unsynced.get(inode)
        if held is not None:
            return bytes(held[offset : offset + size])
        return os.pread(fd, size, offset)

    def write(self, path: str, data: bytes, offset: int, fh: int) -> int:
        if fh == 0:
            return len(data)  # the power-cut file
        fd, inode = self.handles[fh]
        held = self._contents(fd, inode)
        if offset > len(held):
            held.extend(bytes(offset - len(held)))
        held[offset : offset + len(data)] = data
        return len(data)

    def truncate(self, path: str, length: int, fh: int | None = None) -> int:
        if fh:
            fd, inode = self.handles[fh]
            held = self._contents(fd, inode)
        else:
            real = self._real(path)
            fd = os.open(real, os.O_RDWR)
            try:
                held = self._contents(fd, os.fstat(fd).st_ino)
            finally:
                os.close(fd)
        del held[length:]
        held.extend(bytes(max(0, length - len(held))))
        return 0

    def fsync(self, path: str, datasync: int, fh: int) -> int:
        if fh == 0:
            return 0
        if self.fsync_seconds:
            time.sleep(self.fsync_seconds)
        fd, inode = self.handles[fh]
        held = self.unsynced.pop(inode, None)
        if held is not None:
            os.pwrite(fd, bytes(held), 0)
            os.ftruncate(fd, len(held))
        os.fsync(fd)
        return 0

    def flush(self, path: str, fh: int) -> int:
        return 0

    def release(self, path: str, fh: int) -> int:
        handle = self.handles.pop(fh, None)
        if handle is not None:
            os.close(handle[0])
        return 0


def main() -> None:
    backing, mountpoint, seed = sys.argv[1], sys.argv[2], int(sys.argv[3])
    fsync_seconds = float(sys.argv[4]) if len(sys.argv) > 4 else 0.0
    fuse.FUSE(PowerFS(backing, seed, fsync_seconds), mountpoint, foreground=True,
              nothreads=True)  # fmt: skip


if __name__ == "__main__":
    main()
