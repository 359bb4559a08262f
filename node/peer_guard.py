"""Who may use the /_cluster/ endpoints, and whether this node can answer them."""

from __future__ import annotations

from urllib.parse import urlsplit

from node.engine import Engine
from node.errors import NodeFailed, ShoalError, Unavailable
from node.tls import names_match, peer_names
from replication.runner import RaftNode
from replication.transport import secret_matches


class Forbidden(ShoalError):
    status = 403
    slug = "forbidden"
    title = "Cluster endpoints need the cluster secret"


class OtherCluster(ShoalError):
    status = 403
    slug = "other-cluster"
    title = "The request comes from a node of another cluster"


class CertificateOfAnother(ShoalError):
    status = 403
    slug = "certificate-of-another-node"
    title = "The peer certificate does not name the member the request comes from"


class NotAMember(ShoalError):
    status = 403
    slug = "not-a-member"
    title = "The request comes from a node that is not a member of this cluster"


def check_secret(offered: str | None, engine: Engine) -> None:
    secret = engine.settings.cluster_secret
    if secret is None or not secret_matches(offered, secret):
        raise Forbidden("this endpoint is for cluster peers and needs the cluster secret")


def check_peer(offered_cluster: str | None, sender: str | None, engine: Engine) -> None:
    """Only members of this node's own cluster are answered: a node started
    with another member list (another cluster id) or left out of ours could
    otherwise make up a majority with us that the others do not know of."""
    configuration = engine.configuration
    if offered_cluster is None and sender is not None and configuration.has(sender):
        # A member still running a Shoal from before cluster ids: taken, so
        # nodes can be upgraded one at a time, and counted.
        engine.peer_requests_without_id += 1
        return
    if offered_cluster != configuration.cluster_id:
        engine.peer_refusals["other-cluster"] += 1
        raise OtherCluster(
            f"{sender or 'the sender'} belongs to cluster {offered_cluster or '(none given)'}, "
            f"this node to cluster {configuration.cluster_id}; check both nodes' --peers and "
            "data directories"
        )
    if sender is None or sender == engine.settings.node_id or not configuration.has(sender):
        engine.peer_refusals["not-a-member"] += 1
        raise NotAMember(
            f"{sender or 'a node that did not give its id'} is not a member of cluster "
            f"{configuration.cluster_id} (members: {', '.join(sorted(configuration.urls()))})"
        )


def check_certificate(sender: str | None, engine: Engine) -> None:
    """With mutual TLS, a request from member ``sender`` comes with a
    certificate naming that member: its node id, or the host of its URL, as
    the common name or a subject alternative name. Any certificate the CA
    signed would otherwise let its holder speak for every member."""
    names = peer_names.get()
    if engine.settings.peer_ca is None or names is None or sender is None:
        return
    url = engine.member_urls().get(sender)
    host = urlsplit(url).hostname if url else None
    if names_match(names, sender) or (host is not None and names_match(names, host)):
        return
    raise CertificateOfAnother(
        f"the request says it comes from {sender}, whose URL is {url}, but its certificate "
        f"names only {', '.join(sorted(names)) or 'nothing'}; give each node a certificate "
        "naming its node id or its host"
    )


def guard(
    offered_secret: str | None,
    engine: Engine,
    sender: str | None,
    offered_cluster: str | None = None,
    from_peer: bool = True,
) -> RaftNode:
    """The Raft node, if the caller is a peer this node hears and can answer.

    ``from_peer`` False: an operator's request (fault injection) that needs
    the secret but comes from no node.
    """
    check_secret(offered_secret, engine)
    if engine.raft is None:
        raise Unavailable("this node is starting or stopping")
    if from_peer:
        check_peer(offered_cluster, sender, engine)
        check_certificate(sender, engine)
    if sender is not None and engine.faults.blocks_incoming(sender):
        raise Unavailable(f"link from {sender} is cut (fault injection)")
    if engine.raft.failure is not None:
        raise NodeFailed(f"this node has failed: {engine.raft.failure}")
    return engine.raft
