"""POST /_cluster/raft, answered below the web framework.

Every append, heartbeat and vote between peers comes through here, many per
write. Routed through FastAPI each cost a follower about a millisecond of CPU
(dependency solving, exception middleware, response classes) for a request
that is a msgpack body in and a msgpack body out. :class:`NodeMiddleware`
hands this one path straight to :func:`raft_post`; the node header, body
limit and metrics still apply, and errors are the same problem+json.
"""

from __future__ import annotations

from node.engine import Engine
from node.errors import MalformedBody, NodeFailed
from node.peer_guard import check_secret, guard
from replication.interfaces import NotAccepting
from replication.leader_view import HEADER_BYTES as _LEADER_VIEW
from replication.membership import CLUSTER_HEADER
from replication.messages import (
    AppendRequest,
    MalformedMessage,
    SnapshotRequest,
    decode,
    encode,
)
from replication.runner import TermOutOfReach
from replication.transport import SECRET_HEADER

PATH = "/_cluster/raft"
_SECRET = SECRET_HEADER.lower().encode()
_CLUSTER = CLUSTER_HEADER.lower().encode()
_FROM = b"x-shoal-from"


async def raft_post(engine: Engine, headers: dict[bytes, bytes], body: bytes) -> bytes:
    """The msgpack answer to one Raft message (empty when there is none)."""
    offered = headers.get(_SECRET)
    secret = offered.decode(errors="replace") if offered is not None else None
    check_secret(secret, engine)
    try:
        message = decode(body)
    except MalformedMessage as exc:
        raise MalformedBody(f"not a raft message: {exc}") from None
    if isinstance(message, SnapshotRequest):
        raise MalformedBody("snapshots are offered through /_cluster/snapshot")
    named = headers.get(_FROM)
    if named is not None and (claimed := named.decode(errors="replace")) != message.sender:
        raise MalformedBody(
            f"the message says it is from {message.sender!r}, the request from {claimed!r:.70}"
        )
    cluster = headers.get(_CLUSTER)
    raft = guard(
        secret, engine, message.sender, cluster.decode(errors="replace") if cluster else None
    )
    try:
        answer = await raft.handle_message(message)
    except NotAccepting as exc:
        raise NodeFailed(f"this node has failed: {exc}") from None
    except TermOutOfReach as exc:
        raise MalformedBody(str(exc)) from None
    view = headers.get(_LEADER_VIEW)
    if view is not None and isinstance(message, AppendRequest):
        raft.note_leader_view(message.sender, message.term, view.decode(errors="replace"))
    return encode(answer) if answer is not None else b""
