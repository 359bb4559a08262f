"""POST /admin/leadership: hand leadership to another node (operators, the
CLI's ``shoal cluster transfer-leader``, and a node being stopped)."""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field

from node.deps import EngineDep, ServiceDep
from node.errors import InvalidRequest, Unavailable
from node.peer_guard import check_secret
from replication.interfaces import NotAccepting
from replication.raft import CannotTransfer, NotLeader
from replication.runner import TransferFailed
from replication.transport import SECRET_HEADER

router = APIRouter(tags=["system"])


class LeadershipTransfer(BaseModel):
    target: str | None = Field(
        None, max_length=64, description="node id to lead next; left out: the most up-to-date"
    )


@router.post("/admin/leadership")
async def transfer_leadership(
    request: Request, engine: EngineDep, service: ServiceDep, body: LeadershipTransfer
) -> dict[str, Any]:
    """Move leadership to ``target`` without waiting out an election timeout.

    Needs the cluster secret. A follower redirects to the leader (307). The
    answer comes once the target leads; while the hand-over runs (at most
    the longest election timeout) writes are answered 503 and retried."""
    check_secret(request.headers.get(SECRET_HEADER), engine)
    raft = service.leader_or_redirect()
    previous, term = raft.node_id, raft.term
    started = time.monotonic()
    try:
        leader = await raft.transfer_leadership(body.target, engine.handover_seconds)
    except CannotTransfer as exc:
        raise InvalidRequest(f"leadership cannot move: {exc}") from None
    except NotLeader:
        raise Unavailable("this node stopped leading before the hand-over began") from None
    except TransferFailed as exc:
        raise Unavailable(f"{exc}; {previous} still leads", retry_after=2) from None
    except NotAccepting as exc:
        raise Unavailable(f"this node cannot hand over: {exc}") from None
    return {
        "leader_id": leader,
        "previous_leader_id": previous,
        "previous_term": term,
        "term": raft.term,
        "seconds": round(time.monotonic() - started, 3),
    }
