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


class ChangeRefused(ShoalError):
    status = 409
    slug = "membership-change-refused"
    title = "The membership change cannot be made now"


class NewMember(BaseModel):
    """A node to add as a learner (voters are learners promoted once caught up)."""

    id: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")
    url: str = Field(min_length=8, max_length=300, pattern=r"^https?://")


def describe(configuration: Configuration, index: int | None = None) -> dict[str, Any]:
    members = [{"id": m.id, "url": m.url, "voter": m.voter} for m in configuration.members]
    return {"cluster_id": configuration.cluster_id, "members": members, "index": index}


async def _committed(engine: Engine, raft: RaftNode) -> dict[str, Any]:
    """The list in force once it is committed (an answer to a repeated request)."""
    deadline = time.monotonic() + CHANGE_SECONDS
    while True:
        core = raft.core
        if core is not None and core.configuration_index <= raft.commit_index:
            return describe(engine.configuration, core.configuration_index)
        if time.monotonic() > deadline:
            raise Unavailable("the change in progress did not commit in time; read /cluster")
        await asyncio.sleep(0.05)


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
    if engine.settings.tls_cert is not None and not url.startswith("https://"):
        raise InvalidRequest(f"this cluster speaks TLS: give {body.id} an https:// URL (the "
                             "leader would send it the cluster secret and the log)")  # fmt: skip
    for member in current.members:
        if member.id == body.id:
            if member.url == url and member.voter:
                # Only a node with an empty data directory asks to join: as a
                # voter it would count toward majorities without the entries
                # and votes that voter gave.
                raise Conflict(
                    f"{body.id} is a voter; a node cannot join again under a voter's id. "
                    f"If its data is gone, run `shoal cluster remove {body.id}` first, "
                    "then start it with --join"
                )
            if member.url == url:
                return await _committed(engine, raft)  # already in: a join sent again
            raise Conflict(f"{body.id} is already a member, at {member.url}")
        if member.url == url:
            raise Conflict(f"{url} is already the address of member {member.id}")
    grown = Configuration(current.cluster_id, (*current.members, Member(body.id, url, False)))
    return await _change(engine, raft, grown)


@router.post("/admin/members/{node_id}/promote")
async def promote_member(
    request: Request, engine: EngineDep, service: ServiceDep, node_id: str,
    wait: Annotated[float, Query(ge=0, le=600, description="seconds to wait for it to catch up")]
    = CHANGE_SECONDS,
) -> dict[str, Any]:  # fmt: skip
    """Make a learner a voter once it has caught up: the change is tried
    until the leader takes it (it refuses a learner behind its commit index
    or not answering, and any change while another is not committed)."""
    raft = _leader(request, engine, service)
    deadline = time.monotonic() + wait
    while True:
        current = engine.configuration  # read again each time: others may change it
        member = next((m for m in current.members if m.id == node_id), None)
        if member is None:
            raise NotFound(f"{node_id} is not a member")
        if member.voter:
            return await _committed(engine, raft)
        members = tuple(Member(m.id, m.url, m.voter or m.id == node_id) for m in current.members)
        try:
            return await _change(engine, raft, Configuration(current.cluster_id, members))
        except ChangeRefused as refused:
            if time.monotonic() > deadline:
                core = raft.core
                progress = core.progress.get(node_id) if core is not None else None
                behind = "" if core is None or progress is None else (
                    f" ({core.log.last_index() - progress.match_index} entries behind)"
                )  # fmt: skip
                raise Unavailable(f"{node_id} is still catching up{behind}: {refused.detail}; "
                                  "promote it once it has", retry_after=5) from None  # fmt: skip
        await asyncio.sleep(0.2)


@router.delete("/admin/members/{node_id}")
async def remove_member(
    request: Request, engine: EngineDep, service: ServiceDep, node_id: str
) -> dict[str, Any]:
    """Remove a member (the leader too: it steps down once that commits)."""
    raft = _leader(request, engine, service)
    current = engine.configuration
    if not current.has(node_id):
        return await _committed(engine, raft)  # gone already: a removal sent again
    left = tuple(m for m in current.members if m.id != node_id)
    if not any(m.voter for m in left):
        raise InvalidRequest("the last voter cannot be removed")
    return await _change(engine, raft, Configuration(current.cluster_id, left))
