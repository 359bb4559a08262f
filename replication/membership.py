"""Who is in the cluster, and which cluster it is.

A cluster's identity and members are fixed when its nodes first start
(bootstrap, from ``--peers``) and stored in the data directory beside the
log. From then on the stored configuration is the truth: a restart with a
different ``--peers`` is refused, because two nodes that disagree on the
member list can form disjoint majorities and elect two leaders. Every
request between nodes carries the cluster id; a node answers only members
of its own cluster (see :mod:`node.peer_guard`).

The id is derived from the bootstrap member list, so nodes started with
the same list agree on it without talking, and nodes started with
different lists never take each other's messages.
"""

from __future__ import annotations

import hashlib
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path

import msgpack

from wal.checked_file import DamagedFile, read_checked, write_checked

_MAGIC = b"SHOALCF1"
CLUSTER_HEADER = "X-Shoal-Cluster"


class MembershipRefused(Exception):
    """The node's settings disagree with the cluster its data belongs to."""


class CorruptMembership(Exception):
    pass


@dataclass(frozen=True, slots=True)
class Member:
    id: str
    url: str
    voter: bool = True


@dataclass(frozen=True, slots=True)
class Configuration:
    cluster_id: str
    members: tuple[Member, ...]

    def urls(self) -> dict[str, str]:
        return {member.id: member.url for member in self.members}

    def voters(self) -> tuple[str, ...]:
        return tuple(member.id for member in self.members if member.voter)

    def peers_of(self, node_id: str) -> dict[str, str]:
        return {member.id: member.url for member in self.members if member.id != node_id}

    def has(self, node_id: str) -> bool:
        return any(member.id == node_id for member in self.members)

    def to_wire(self) -> dict[str, object]:
        return {
            "cluster_id": self.cluster_id,
            "members": [[member.id, member.url, member.voter] for member in self.members],
        }

    @classmethod
    def from_wire(cls, value: object) -> Configuration:
        if not isinstance(value, dict) or not isinstance(value.get("cluster_id"), str):
            raise ValueError("not a cluster configuration")
        members = []
        for item in value.get("members") or []:
            node_id, url, voter = item
            if not (isinstance(node_id, str) and isinstance(url, str) and isinstance(voter, bool)):
                raise ValueError(f"not a member: {item!r:.60}")
            members.append(Member(node_id, url, voter))
        if not members:
            raise ValueError("a configuration without members")
        return cls(value["cluster_id"], tuple(members))


def encode_configuration(configuration: Configuration) -> bytes:
    """The payload of a CONFIG log entry."""
    return msgpack.packb(configuration.to_wire(), use_bin_type=True)


def decode_configuration(payload: bytes) -> Configuration:
    return Configuration.from_wire(msgpack.unpackb(payload, raw=False))


def bootstrap_id(urls: dict[str, str]) -> str:
    """The id of a cluster bootstrapped with these members (and URLs)."""
    listing = "\n".join(f"{node}={urls[node]}" for node in sorted(urls))
    return hashlib.sha256(b"shoal-cluster-v1\n" + listing.encode()).hexdigest()[:16]


def bootstrap(urls: dict[str, str]) -> Configuration:
    members = tuple(Member(node, urls[node]) for node in sorted(urls))
    return Configuration(bootstrap_id(urls), members)


class ClusterStore:
    """The configuration this node belongs to, in ``<data>/cluster``."""

    def __init__(self, path: Path) -> None:
        self.path = path
        # The list the cluster was bootstrapped with (what --peers said), kept
        # across later changes: a restart with that same --peers is fine.
        self.bootstrap: dict[str, str] | None = None
        # Every node any list this node appended ever named (see RaftCore).
        self.known: set[str] = set()
        # The loop (a list appended) and the applier (one committed) both save.
        self._saving = threading.Lock()
        self._last: tuple[Configuration, int] | None = None

    def load(self) -> Configuration | None:
        found = self.load_at()
        return found[1] if found is not None else None

    def load_at(self) -> tuple[int, Configuration] | None:
        """The stored list and the log index it is in force from (0: the
        bootstrap list, or a file from before indexes were stored)."""
        try:
            stored = read_checked(self.path, _MAGIC)
        except DamagedFile:
            raise CorruptMembership(
                f"{self.path} is damaged; the node cannot tell which cluster it belongs to "
                "(restore the file from a backup, or wipe the data directory and rejoin)"
            ) from None
        if stored is None:
            return None
        try:
            index = stored.get("index", 0) if isinstance(stored, dict) else 0
            configuration = Configuration.from_wire(stored)
            first = stored.get("bootstrap") if isinstance(stored, dict) else None
            self.bootstrap = dict(first) if isinstance(first, dict) else configuration.urls()
            known = stored.get("known") if isinstance(stored, dict) else None
            self.known = set(known) if isinstance(known, list) else set(configuration.urls())
            self._last = (configuration, int(index))
            return int(index), configuration
        except (ValueError, TypeError) as exc:
            raise CorruptMembership(f"{self.path} does not hold a configuration: {exc}") from None

    def remember_members(self, ids: set[str]) -> None:
        """Add ``ids`` to the known members, durably (the stored list stays)."""
        with self._saving:
            found = self._last
            if found is None:
                return
            self.known |= ids
            self._write(*found)

    def save(
        self, configuration: Configuration, index: int = 0, new_bootstrap: bool = False
    ) -> None:
        """``index``: the log index the list is in force from; a list stored
        at or past a snapshot's index wins over the snapshot's own.
        ``new_bootstrap``: this list starts a cluster (first start, forced,
        restored, joined) and is what a restart's --peers may repeat."""
        with self._saving:
            if new_bootstrap or self.bootstrap is None:
                self.bootstrap = configuration.urls()
            self.known = (set() if new_bootstrap else self.known) | set(configuration.urls())
            self._write(configuration, index)

    def _write(self, configuration: Configuration, index: int) -> None:
        body = {**configuration.to_wire(), "index": index, "bootstrap": self.bootstrap,
                "known": sorted(self.known)}  # fmt: skip
        write_checked(self.path, _MAGIC, body)
        self._last = (configuration, index)


@dataclass(frozen=True, slots=True)
class StartingPoint:
    """What this node's data says about its past, for :func:`resolve`."""

    has_history: bool  # log entries, a snapshot or a term: not a fresh directory
    voted_for: str | None


def _describe(urls: dict[str, str]) -> str:
    return ", ".join(f"{node}={urls[node]}" for node in sorted(urls))


def resolve(
    stored: Configuration | None,
    node_id: str,
    own_url: str,
    peers: dict[str, str],
    past: StartingPoint,
    force_new_cluster: bool = False,
    bootstrapped_with: dict[str, str] | None = None,
) -> tuple[Configuration, str | None]:
    """The configuration to start with, and why it was (re)written, if it was.

    ``peers`` is ``--peers`` as given (empty: not given). Raises
    :class:`MembershipRefused` with a sentence for the operator.
    """
    if force_new_cluster:
        if not past.has_history and stored is None:
            raise MembershipRefused(
                "--force-new-cluster is for a data directory that holds a cluster's data; "
                "this one is empty (start without it)"
            )
        if peers and set(peers) != {node_id}:
            raise MembershipRefused(
                "--force-new-cluster starts a cluster of one: leave out --peers"
            )
        # A fresh id: the old members, if they come back, are not taken for ours.
        fresh = Configuration(uuid.uuid4().hex[:16], (Member(node_id, own_url),))
        return fresh, "forced a new cluster of one from this node's data"
    if stored is None:
        if peers:
            return bootstrap(peers), "bootstrapped from --peers"
        if past.has_history:
            # Written before member lists were stored: a member of a cluster
            # restarted alone would take its whole log as committed and lead.
            raise MembershipRefused(
                "this data directory holds data but no member list (it was written by an "
                "older Shoal); start it once with the --peers it ran with (a single node: "
                f"--peers {node_id}=<its URL>), or with --force-new-cluster to make it a "
                "cluster of one from its own data"
            )
        return bootstrap({node_id: own_url}), "bootstrapped as a cluster of one"
    if not stored.has(node_id):
        raise MembershipRefused(
            f"this data directory belongs to cluster {stored.cluster_id}, whose members "
            f"({_describe(stored.urls())}) do not include {node_id}; start it with its own "
            "node id, or wipe the data directory"
        )
    if set(stored.urls()) == {node_id} and set(peers) <= {node_id}:
        # A cluster of one: nobody else uses its URL, so it may move freely.
        url = peers.get(node_id, own_url)
        if url != stored.urls()[node_id]:
            moved = Configuration(stored.cluster_id, (Member(node_id, url),))
            return moved, f"this node's URL is now {url}"
        return stored, None
    # --peers may repeat the bootstrap list (deployments keep it in their
    # environment) or name the members in force; anything else is refused.
    if peers and peers != stored.urls() and peers != (bootstrapped_with or stored.urls()):
        raise MembershipRefused(
            f"--peers lists {_describe(peers)} but this node belongs to cluster "
            f"{stored.cluster_id} with members {_describe(stored.urls())}. Restarting nodes "
            "with a different member list can elect two leaders, so it is refused: start "
            "with the list above (or without --peers), see docs/operations.md for changing "
            "members"
        )
    return stored, None
