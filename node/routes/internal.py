"""/_cluster/*: node-to-node endpoints, msgpack bodies, cluster secret required."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel, Field

from node.deps import EngineDep
from node.engine import Engine
from node.errors import InvalidRequest, NodeFailed, NotFound, ShoalError, Unavailable
from node.peer_guard import guard
from node.snapshot_inbox import ChunkOutOfOrder, TransferKey
from replication.interfaces import NotAccepting
from replication.membership import CLUSTER_HEADER
from replication.messages import MAX_TERM, SnapshotRequest, encode
from replication.raft import NotLeader
from replication.runner import RaftNode, TermOutOfReach
from replication.transport import MSGPACK, SECRET_HEADER
from wal import CorruptSnapshot

router = APIRouter(prefix="/_cluster", include_in_schema=False)


def _guard(request: Request, engine: Engine, sender: str | None) -> RaftNode:
    headers = request.headers
    return guard(headers.get(SECRET_HEADER), engine, sender, headers.get(CLUSTER_HEADER))


def _guard_operator(request: Request, engine: Engine) -> RaftNode:
    return guard(request.headers.get(SECRET_HEADER), engine, None, from_peer=False)


class TransferConflict(ShoalError):
    status = 409
    slug = "snapshot-transfer-conflict"
    title = "The snapshot chunk does not continue the transfer under way"


class SnapshotDamaged(ShoalError):
    status = 422
    slug = "snapshot-damaged"
    title = "The snapshot sent cannot be installed"


async def _chunk_params(
    index: Annotated[int, Query(ge=1, lt=1 << 63)],
    term: Annotated[int, Query(ge=1, le=MAX_TERM)],
    leader: Annotated[str, Query(max_length=200)],
    leader_term: Annotated[int, Query(ge=1, le=MAX_TERM)],
    rpc: Annotated[int, Query(ge=0, lt=1 << 63)],
) -> TransferKey:
    return TransferKey(leader, leader_term, index, term, rpc)


ChunkKey = Annotated[TransferKey, Depends(_chunk_params)]


def _offer(key: TransferKey) -> SnapshotRequest:
    return SnapshotRequest(key.leader_term, key.leader, key.index, key.term, key.rpc)


@router.post("/snapshot")
async def snapshot_chunk(
    request: Request,
    engine: EngineDep,
    key: ChunkKey,
    offset: Annotated[int, Query(ge=0, lt=1 << 50)],
    done: Annotated[int, Query(ge=0, le=1)],
) -> Response:
    """One chunk of a snapshot the leader streams to us. An answer with a
    body ends the transfer at once (a stale leader, or nothing we need);
    after the last chunk the leader polls /snapshot/status."""
    raft = _guard(request, engine, key.leader)
    if offset == 0 or key.leader_term < raft.term:
        # Ask first: a stale leader learns our term, and a follower that
        # already holds this much needs no bytes.
        try:
            answer = await raft.handle_message(_offer(key))
        except TermOutOfReach as exc:
            raise InvalidRequest(str(exc)) from None
        if answer is not None:
            return Response(encode(answer), media_type=MSGPACK)
    try:
        await asyncio.to_thread(engine.inbox.write, key, offset, await request.body())
        if not done:
            return Response(b"", media_type=MSGPACK)
        path = await asyncio.to_thread(engine.inbox.finish, key)
    except ChunkOutOfOrder as exc:
        raise TransferConflict(str(exc)) from None
    for old in [k for k, task in engine.installs.items() if task.done()]:
        del engine.installs[old]  # answers nobody came for
    engine.installs[key] = asyncio.ensure_future(_install(engine, raft, key, path))
    return Response(b"", media_type=MSGPACK)


async def _install(engine: Engine, raft: RaftNode, key: TransferKey, path: Path) -> bytes:
    try:
        answer = await raft.install_snapshot(
            _offer(key),
            lambda: engine.prepare_install(path, key.index, key.term),
            engine.commit_install,
            engine.discard_install,
        )
        return encode(answer)
    finally:
        path.unlink(missing_ok=True)  # when it was not installed (renamed otherwise)
        engine.inbox.installed(key)


@router.post("/snapshot/status")
async def snapshot_status(request: Request, engine: EngineDep, key: ChunkKey) -> Response:
    """The answer to a received snapshot once it is installed; empty while
    it is still being installed."""
    _guard(request, engine, key.leader)
    task = engine.installs.get(key)
    if task is None:
        raise NotFound("no install of that snapshot transfer is known here")
    if not task.done():
        return Response(b"", media_type=MSGPACK)
    del engine.installs[key]
    try:
        return Response(task.result(), media_type=MSGPACK)
    except CorruptSnapshot as exc:  # nothing changed here; the leader sends it again
        raise SnapshotDamaged(f"the snapshot sent for entry {key.index}: {exc}") from None
    except TermOutOfReach as exc:
        raise InvalidRequest(str(exc)) from None
    except NotAccepting as exc:
        raise Unavailable(f"this node cannot install a snapshot now: {exc}") from None


@router.post("/read_index")
async def read_index(request: Request, engine: EngineDep) -> dict[str, int]:
    raft = _guard(request, engine, request.headers.get("X-Shoal-From"))
    try:
        return {"index": await raft.read_index()}
    except NotLeader:
        raise Unavailable("this node no longer leads") from None
    except NotAccepting as exc:
        raise NodeFailed(f"this node has failed: {exc}") from None


class Faults(BaseModel):
    drop_to: list[str] = []
    drop_from: list[str] = []
    drop_rate: float = Field(0.0, ge=0, le=1)
    duplicate_rate: float = Field(0.0, ge=0, le=1)
    max_delay: float = Field(0.0, ge=0, le=10)
    snapshot_chunk_delay: float = Field(0.0, ge=0, le=10)


@router.get("/faults")
def get_faults(request: Request, engine: EngineDep) -> dict[str, Any]:
    _guard_operator(request, engine)
    return _describe(engine)


def _describe(engine: Engine) -> dict[str, Any]:
    faults = engine.faults
    return {"drop_to": sorted(faults.drop_to), "drop_from": sorted(faults.drop_from),
            "drop_rate": faults.drop_rate, "duplicate_rate": faults.duplicate_rate,
            "max_delay": faults.max_delay,
            "snapshot_chunk_delay": faults.snapshot_chunk_delay}  # fmt: skip


@router.post("/faults")
def set_faults(request: Request, engine: EngineDep, body: Faults) -> dict[str, Any]:
    """Cut links for a test; only when the node runs with fault injection on."""
    _guard_operator(request, engine)
    if not engine.settings.fault_injection:
        raise NotFound("fault injection is off on this node")
    faults = engine.faults
    faults.drop_to, faults.drop_from = set(body.drop_to), set(body.drop_from)
    faults.drop_rate, faults.duplicate_rate = body.drop_rate, body.duplicate_rate
    faults.max_delay = body.max_delay
    faults.snapshot_chunk_delay = body.snapshot_chunk_delay
    return _describe(engine)
