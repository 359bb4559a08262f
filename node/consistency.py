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
from node.engine import Engine
from node.errors import (
    FollowerBehind,
    InvalidRequest,
    NodeFailed,
    NoLeader,
    ShoalError,
    Unavailable,
)
from replication.interfaces import NotAccepting
from replication.raft import NotLeader
from replication.runner import RaftNode
from replication.transport import PeerUnreachable

WAIT_SECONDS = 5.0
# A session read waits for an index at most this far beyond what the node
# knows is committed; farther, it cannot come within WAIT_SECONDS, and no
# waiter is kept for it.
MAX_INDEX_AHEAD = 1_000_000
Level = Literal["eventual", "session", "linearizable"]


async def read_barrier(
    request: Request,
    engine: EngineDep,
    consistency: Annotated[
        Level | None, Query(description="eventual, session or linearizable")
    ] = None,
) -> None:
    level = consistency or request.headers.get("x-shoal-consistency", "eventual")
    await wait_for_consistency(engine, level, request.headers.get("x-shoal-min-index"))


async def wait_for_consistency(engine: Engine, level: str, wanted: str | None) -> None:
    """Return once this node may answer a read at ``level`` (after applying
    entry ``wanted``, the X-Shoal-Min-Index header, when given)."""
    raft = engine.raft
    if raft is None:
        raise Unavailable("this node is starting or stopping")
    if raft.failure is not None:
        raise NodeFailed(f"this node has failed and serves no reads: {raft.failure}")
    if level not in ("eventual", "session", "linearizable"):
        raise InvalidRequest(
            f"consistency must be eventual, session or linearizable, not {level!r}"
        )
    if wanted is not None:
        if not (wanted.isascii() and wanted.isdigit()) or len(wanted) > 19:
            raise InvalidRequest("X-Shoal-Min-Index must be a log index (a whole number)")
        index = int(wanted)
        if index > raft.commit_index + MAX_INDEX_AHEAD:
            raise FollowerBehind(
                f"entry {index} is more than {MAX_INDEX_AHEAD:,} entries beyond what this "
                f"node knows is committed ({raft.commit_index}); send the X-Shoal-Index "
                "of a write this cluster answered, or read from the leader"
            )
        await _wait(raft, index)
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
            raise _refusal(raft, exc) from None
        await _wait(raft, index)


def _refusal(raft: RaftNode, exc: NotAccepting) -> ShoalError:
    """A stopping node sends the client elsewhere (retryable); a failed one says so."""
    if raft.stopping is not None and raft.failure is None:
        return Unavailable(f"this node is stopping ({exc}); read from another node")
    return NodeFailed(f"this node has failed and serves no reads: {exc}")


async def _wait(raft: RaftNode, index: int) -> None:
    applied = raft.applied_index
    try:
        reached = await raft.wait_applied(index, WAIT_SECONDS)
    except NotAccepting as exc:
        raise _refusal(raft, exc) from None
    if not reached:
        raise FollowerBehind(
            f"this node has applied up to entry {applied} and did not reach {index} within "
            f"{WAIT_SECONDS:g}s; retry, or read from the leader"
        )


ReadBarrier = Annotated[None, Depends(read_barrier)]
