"""Read consistency: eventual (default), session, linearizable.

- session: ``X-Shoal-Min-Index: N`` waits (briefly) until this node has
  applied entry N, so a client reads its own writes on any node;
- linearizable: ``?consistency=linearizable`` (or ``X-Shoal-Consistency``)
  gets a read index confirmed by a quorum (from the leader, asked over the
  cluster link when this node follows) and waits until it is applied.
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import Depends, Query, Request

from node.deps import EngineDep
from node.errors import FollowerBehind, InvalidRequest, NodeFailed, NoLeader, Unavailable
from replication.interfaces import NotAccepting
from replication.raft import NotLeader
from replication.transport import PeerUnreachable

WAIT_SECONDS = 5.0
Level = Literal["eventual", "session", "linearizable"]


async def read_barrier(
    request: Request,
    engine: EngineDep,
    consistency: Annotated[
        Level | None, Query(description="eventual, session or linearizable")
    ] = None,
) -> None:
    raft = engine.raft
    if raft is None:
        raise Unavailable("this node is starting or stopping")
    if raft.failure is not None:
        raise NodeFailed(f"this node has failed and serves no reads: {raft.failure}")
    level = consistency or request.headers.get("x-shoal-consistency", "eventual")
    if level not in ("eventual", "session", "linearizable"):
        raise InvalidRequest(
            f"consistency must be eventual, session or linearizable, not {level!r}"
        )
    wanted = request.headers.get("x-shoal-min-index")
    if wanted is not None:
        if not wanted.isdigit():
            raise InvalidRequest("X-Shoal-Min-Index must be a log index (a whole number)")
        await _wait(raft.wait_applied, int(wanted), raft.applied_index)
    if level == "linearizable":
        try:
            if raft.is_leader:
                index = await raft.read_index()
            elif raft.leader_id is None or raft.transport is None:
                raise NoLeader("no leader is known right now; a linearizable read needs one")
            else:
                index = await raft.forwarded_read_index()
        except (NotLeader, PeerUnreachable):
            raise NoLeader("the leader could not confirm a read index; retry soon") from None
        except NotAccepting as exc:
            raise NodeFailed(f"this node has failed and serves no reads: {exc}") from None
        await _wait(raft.wait_applied, index, raft.applied_index)


async def _wait(wait_applied: object, index: int, applied: int) -> None:
    assert callable(wait_applied)
    try:
        reached = await wait_applied(index, WAIT_SECONDS)
    except NotAccepting as exc:
        raise NodeFailed(f"this node has failed and serves no reads: {exc}") from None
    if not reached:
        raise FollowerBehind(
            f"this node has applied up to entry {applied} and did not reach {index} within "
            f"{WAIT_SECONDS:g}s; retry, or read from the leader"
        )


ReadBarrier = Annotated[None, Depends(read_barrier)]
