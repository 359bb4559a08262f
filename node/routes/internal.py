"""/_cluster/*: node-to-node endpoints, msgpack bodies, cluster secret required."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, Field

from node.deps import EngineDep
from node.engine import Engine
from node.errors import MalformedBody, NotFound, ShoalError, Unavailable
from replication.messages import decode, encode
from replication.raft import NotLeader
from replication.runner import RaftNode
from replication.transport import MSGPACK, SECRET_HEADER, secret_matches

router = APIRouter(prefix="/_cluster", include_in_schema=False)


class Forbidden(ShoalError):
    status = 403
    slug = "forbidden"
    title = "Cluster endpoints need the cluster secret"


def _check_secret(request: Request, engine: Engine) -> None:
    secret = engine.settings.cluster_secret
    if secret is None or not secret_matches(request.headers.get(SECRET_HEADER), secret):
        raise Forbidden("this endpoint is for cluster peers and needs the cluster secret")


def _guard(request: Request, engine: Engine, sender: str | None) -> RaftNode:
    _check_secret(request, engine)
    if sender is not None and engine.faults.blocks_incoming(sender):
        raise Unavailable(f"link from {sender} is cut (fault injection)")
    if engine.raft is None:
        raise Unavailable("this node is starting or stopping")
    return engine.raft


@router.post("/raft")
async def raft_message(request: Request, engine: EngineDep) -> Response:
    _check_secret(request, engine)
    try:
        message = decode(await request.body())
    except Exception as exc:  # msgpack raises several unrelated types
        raise MalformedBody(f"not a raft message: {exc}") from None
    raft = _guard(request, engine, message.sender)
    answer = await raft.handle_message(message)
    return Response(encode(answer) if answer is not None else b"", media_type=MSGPACK)


def _write_chunk(path: Path, offset: int, data: bytes) -> None:
    with open(path, "r+b" if offset else "wb") as handle:
        handle.seek(offset)
        handle.write(data)
        if handle.tell() != offset + len(data):
            raise OSError("short write of a snapshot chunk")


@router.post("/snapshot")
async def snapshot_chunk(
    request: Request,
    engine: EngineDep,
    index: int,
    term: int,
    leader: str,
    leader_term: int,
    rpc: int,
    offset: int,
    done: int,
) -> Response:
    raft = _guard(request, engine, leader)
    path = engine.incoming_snapshot_path(leader, index, term)
    if offset and not path.exists():
        raise NotFound("no snapshot transfer in progress at that offset")
    await asyncio.to_thread(_write_chunk, path, offset, await request.body())
    if not done:
        return Response(b"", media_type=MSGPACK)
    answer = await raft.install_snapshot(
        lambda: engine.install_snapshot_file(path), leader, leader_term, rpc
    )
    return Response(encode(answer) if answer is not None else b"", media_type=MSGPACK)


@router.post("/read_index")
async def read_index(request: Request, engine: EngineDep) -> dict[str, int]:
    raft = _guard(request, engine, request.headers.get("X-Shoal-From"))
    try:
        return {"index": await raft.read_index()}
    except NotLeader:
        raise Unavailable("this node no longer leads") from None


class Faults(BaseModel):
    drop_to: list[str] = []
    drop_from: list[str] = []
    drop_rate: float = Field(0.0, ge=0, le=1)
    duplicate_rate: float = Field(0.0, ge=0, le=1)
    max_delay: float = Field(0.0, ge=0, le=10)


@router.get("/faults")
def get_faults(request: Request, engine: EngineDep) -> dict[str, Any]:
    _guard(request, engine, None)
    return _describe(engine)


def _describe(engine: Engine) -> dict[str, Any]:
    faults = engine.faults
    return {"drop_to": sorted(faults.drop_to), "drop_from": sorted(faults.drop_from),
            "drop_rate": faults.drop_rate, "duplicate_rate": faults.duplicate_rate,
            "max_delay": faults.max_delay}  # fmt: skip


@router.post("/faults")
def set_faults(request: Request, engine: EngineDep, body: Faults) -> dict[str, Any]:
    """Cut links for a test; only when the node runs with fault injection on."""
    _guard(request, engine, None)
    if not engine.settings.fault_injection:
        raise NotFound("fault injection is off on this node")
    faults = engine.faults
    faults.drop_to, faults.drop_from = set(body.drop_to), set(body.drop_from)
    faults.drop_rate, faults.duplicate_rate = body.drop_rate, body.duplicate_rate
    faults.max_delay = body.max_delay
    return _describe(engine)
