"""Who may use the /_cluster/ endpoints, and whether this node can answer them."""

from __future__ import annotations

from node.engine import Engine
from node.errors import NodeFailed, ShoalError, Unavailable
from replication.runner import RaftNode
from replication.transport import secret_matches


class Forbidden(ShoalError):
    status = 403
    slug = "forbidden"
    title = "Cluster endpoints need the cluster secret"


def check_secret(offered: str | None, engine: Engine) -> None:
    secret = engine.settings.cluster_secret
    if secret is None or not secret_matches(offered, secret):
        raise Forbidden("this endpoint is for cluster peers and needs the cluster secret")


def guard(offered_secret: str | None, engine: Engine, sender: str | None) -> RaftNode:
    """The Raft node, if the caller is a peer this node hears and can answer."""
    check_secret(offered_secret, engine)
    if sender is not None and engine.faults.blocks_incoming(sender):
        raise Unavailable(f"link from {sender} is cut (fault injection)")
    if engine.raft is None:
        raise Unavailable("this node is starting or stopping")
    if engine.raft.failure is not None:
        raise NodeFailed(f"this node has failed: {engine.raft.failure}")
    return engine.raft
