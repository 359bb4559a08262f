"""/admin/members: add a node (as a learner, or a voter), promote a learner,
remove a member; one change at a time, through the log, answered once the
change is committed. The cluster secret is required; a follower redirects
to the leader (307)."""

from __future__ import annotations

import asyncio
import time
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, Field

from node.deps import EngineDep, ServiceDep
from node.engine import Engine
from node.errors import Conflict, InvalidRequest, NotFound, ShoalError, Unavailable
from node.peer_guard import check_secret
from replication.interfaces import NotAccepting
from replication.membership import Configuration, Member
from replication.raft import MembershipChangeRefused, NotLeader
from replication.runner import RaftNode
from replication.transport import SECRET_HEADER

router = APIRouter(tags=["system"])
CHANGE_SECONDS = 30.0
# A learner is promoted once it is this close to the leader's log.
CAUGHT_UP_ENTRIES = 64


class ChangeRefused(ShoalError):
    status = 409
    slug = "membership-change-refused"
    title = "The membership change cannot be made now"


class NewMember(BaseModel):
    id: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")
    url: str = Field(min_length=8, max_length=300, pattern=r"^https?://")
    voter: bool = False


def describe(configuration: Configuration, index: int | None = None) -> dict[str, Any]:
    members = [{"id": m.id, "url": m.url, "voter": m.voter} for m in configuration.members]
    return {"cluster_id": configuration.cluster_id, "members": members, "index": index}


async def _change(engine: Engine, raft: RaftNode, configuration: Configuration) -> dict[str, Any]:
    try:
        committed = await asyncio.wait_for(raft.propose_configuration(configuration),
                                           CHANGE_SECONDS)  # fmt: skip
    except MembershipChangeRefused as exc:
        raise ChangeRefused(str(exc)) from None
    except NotLeader:
        raise Unavailable("this node stopped leading before the change was made") from None
    except (TimeoutError, NotAccepting) as exc:
        raise Unavailable(
            f"the change may or may not have been made ({exc or 'timed out'}); read /cluster"
        ) from None
    return describe(engine.configuration, committed.index)


def _leader(request: Request, engine: Engine, service: Any) -> RaftNode:
    check_secret(request.headers.get(SECRET_HEADER), engine)
    raft: RaftNode = service.leader_or_redirect()
    return raft


@router.post("/admin/members")
async def add_member(
    request: Request, engine: EngineDep, service: ServiceDep, body: NewMember
) -> dict[str, Any]:
    """Add a node: a learner by default (it receives the log and serves
    reads without counting toward majorities; promote it once caught up)."""
    raft = _leader(request, engine, service)
    current = engine.configuration
    url = body.url.rstrip("/")
    for member in current.members:
        if member.id == body.id:
            if member.url == url:
                return describe(current)  # already in: a join sent again
            raise Conflict(f"{body.id} is already a member, at {member.url}")
        if member.url == url:
            raise Conflict(f"{url} is already the address of member {member.id}")
    grown = Configuration(current.cluster_id, (*current.members, Member(body.id, url, body.voter)))
    return await _change(engine, raft, grown)


@router.post("/admin/members/{node_id}/promote")
async def promote_member(
    request: Request, engine: EngineDep, service: ServiceDep, node_id: str,
    wait: Annotated[float, Query(ge=0, le=600, description="seconds to wait for it to catch up")]
    = CHANGE_SECONDS,
) -> dict[str, Any]:  # fmt: skip
    """Make a learner a voter, once its log is within a few entries of ours."""
    raft = _leader(request, engine, service)
    current = engine.configuration
    member = next((m for m in current.members if m.id == node_id), None)
    if member is None:
        raise NotFound(f"{node_id} is not a member")
    if member.voter:
        return describe(current)
    deadline = time.monotonic() + wait
    while True:
        core = raft.core
        progress = core.progress.get(node_id) if core is not None else None
        lag = None if core is None or progress is None else (
            core.log.last_index() - progress.match_index
        )  # fmt: skip
        # It answered lately (a node that never started has a match of 0 and
        # a short log might look caught up) and holds nearly all of our log.
        answering = progress is not None and (
            time.monotonic() - progress.acked_sent < 2 * engine.settings.election_timeout
        )
        if answering and lag is not None and lag <= CAUGHT_UP_ENTRIES:
            break
        if time.monotonic() > deadline:
            raise Unavailable(f"{node_id} is still catching up ({lag} entries behind); "
                              "promote it once it has", retry_after=5)  # fmt: skip
        await asyncio.sleep(0.1)
    members = tuple(Member(m.id, m.url, True) if m.id == node_id else m for m in current.members)
    return await _change(engine, raft, Configuration(current.cluster_id, members))


@router.delete("/admin/members/{node_id}")
async def remove_member(
    request: Request, engine: EngineDep, service: ServiceDep, node_id: str
) -> dict[str, Any]:
    """Remove a member (the leader too: it steps down once that commits)."""
    raft = _leader(request, engine, service)
    current = engine.configuration
    if not current.has(node_id):
        raise NotFound(f"{node_id} is not a member")
    left = tuple(m for m in current.members if m.id != node_id)
    if not any(m.voter for m in left):
        raise InvalidRequest("the last voter cannot be removed")
    return await _change(engine, raft, Configuration(current.cluster_id, left))
