"""POST /admin/backup: this node's state as of a committed index, streamed.

Any node answers (a follower spares the leader the work); the cluster
secret is required, since the answer holds all the data. The body is the
snapshot file; its index, term, state digest and SHA-256 come in headers,
and ``shoal backup`` puts them into the backup file's header."""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import AsyncIterator
from typing import BinaryIO

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse

from node.consistency import wait_for_consistency
from node.deps import EngineDep
from node.errors import Unavailable
from node.peer_guard import check_secret
from node.timeutil import now_us, to_iso
from replication.transport import SECRET_HEADER

router = APIRouter(tags=["system"])
CHUNK = 1 << 20


def _sha256(file: BinaryIO) -> tuple[str, int]:
    fd = file.fileno()
    hasher = hashlib.sha256()
    offset = 0
    while chunk := os.pread(fd, 4 << 20, offset):
        hasher.update(chunk)
        offset += len(chunk)
    return hasher.hexdigest(), offset


@router.post("/admin/backup")
async def backup(request: Request, engine: EngineDep) -> StreamingResponse:
    """A consistent snapshot as of a committed index, holding every write
    acknowledged before the request arrived."""
    check_secret(request.headers.get(SECRET_HEADER), engine)
    # As a linearizable read (which also refuses on a node that failed, is
    # starting, or knows no leader): every write acknowledged before the request is in it.
    await wait_for_consistency(engine, "linearizable", None)
    try:
        info, digest, file = await asyncio.to_thread(engine.snapshot_for_backup)
    except RuntimeError as exc:
        raise Unavailable(str(exc)) from None
    # From here the open file closes when dropped: at the end of the body, or
    # when a response that never started is let go.
    sha256, size = await asyncio.to_thread(_sha256, file)

    async def body() -> AsyncIterator[bytes]:
        try:
            offset, fd = 0, file.fileno()
            while offset < size:
                chunk = await asyncio.to_thread(os.pread, fd, min(CHUNK, size - offset), offset)
                if not chunk:
                    break
                offset += len(chunk)
                yield chunk
        finally:
            file.close()

    prefix = "X-Shoal-Backup-"
    headers = {
        prefix + "Index": str(info.index), prefix + "Term": str(info.term),
        prefix + "Digest": digest, prefix + "Sha256": sha256, prefix + "Bytes": str(size),
        prefix + "Cluster": engine.configuration.cluster_id,
        prefix + "Node": engine.settings.node_id, prefix + "Created": to_iso(now_us()),
        "Content-Length": str(size),
    }  # fmt: skip
    return StreamingResponse(body(), media_type="application/octet-stream", headers=headers)
