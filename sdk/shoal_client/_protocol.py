"""The client's decisions, without I/O: shared by the sync and async clients.

- Writes go to the leader. The leader is learned from ``/cluster`` or from a
  307's ``Location``; a refused connection or "no leader" answer makes the
  client look again, with backoff.
- Every logical write gets one ``Idempotency-Key`` for all its attempts, so
  a retry across a failover is applied once.
- Reads go round-robin to the followers (the leader when there are none) and
  carry ``X-Shoal-Min-Index`` with the highest index this client has written,
  so a client always reads its own writes.
- Requests, and with them the API key, go only to URLs the client trusts:
  one at a host:port the user gave, or one that a node reached through such
  a URL lists as a member (``/cluster``). Given any ``https://`` URL, no
  ``http://`` one is trusted (no downgrade). A redirect or a leader URL
  outside that set is not followed; the error says which URL it was.
"""

from __future__ import annotations

import random
import ssl
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urljoin, urlsplit

from shoal_client._errors import ConnectionFailed, ShoalError, error_for
from shoal_client._wire import encode

RETRY_TYPES = ("no-leader", "outcome-unknown", "write-not-applied", "storage-failure",
               "unavailable", "follower-behind", "embedding-unavailable")  # fmt: skip


@dataclass
class Call:
    """One logical request, however many attempts it takes. A JSON body is
    encoded once, here, however many attempts send it."""

    method: str
    path: str
    json: Any = None
    params: dict[str, Any] | None = None
    write: bool = False
    key: str | None = None
    content: bytes | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        if self.write and self.key is None:
            self.key = str(uuid.uuid4())
        if self.json is not None:
            # Writes with sorted keys: the server ties an Idempotency-Key to
            # the body's bytes, and one logical write (an upsert sent again
            # from a regenerated file, say) must give the same bytes.
            self.content = encode(self.json, canonical=self.write)


@dataclass(frozen=True)
class Send:
    node: str
    method: str
    url: str
    headers: dict[str, str]
    params: dict[str, Any] | None
    content: bytes | None


@dataclass(frozen=True)
class Decision:
    done: bool = False
    delay: float = 0.0
    error: ShoalError | None = None


@dataclass
class ClusterState:
    given: list[str]
    api_key: str | None = None
    max_attempts: int = 20
    leader: str | None = None
    last_index: int = 0
    _turn: int = 0
    _down: set[str] = field(default_factory=set)
    # node id -> the URL this client reached it by. Nodes advertise the URLs
    # their peers use (inside a container network, say); the ones the user
    # gave are preferred for any node they identify.
    reached: dict[str, str] = field(default_factory=dict)
    advertised: dict[str, str] = field(default_factory=dict)
    rng: random.Random = field(default_factory=random.Random)
    # The newest URL the cluster named that this client would not send to.
    refused: str | None = None
    # URLs the nodes reached through the user's own URLs list as members.
    _vouched: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        # Short-lived clients (one CLI command, one request each) would all
        # read from the same node if every client started its rotation at 0.
        self._turn = self.rng.randrange(1 << 16)
        self._given_origins = {_origin(url) for url in self.given}
        self._https_only = any(_scheme(url) == "https" for url in self.given)

    def trusts(self, url: str) -> bool:
        """May requests, and the API key, go to ``url``?"""
        if _scheme(url) not in ("http", "https"):
            return False
        if self._https_only and _scheme(url) != "https":
            return False  # never downgrade to plain text
        return _origin(url) in self._given_origins or url in self._vouched

    def no_leader(self, call: Call) -> ConnectionFailed:
        why = f"{call.method} {call.path}: no leader after {self.max_attempts} attempts"
        if self.refused is not None:
            why += (f"; the cluster named {self.refused}, which is neither one of the URLs "
                    "given nor a member the given nodes list (or would downgrade https to "
                    "http): this client does not send requests or its API key there; "
                    "give that URL too if it is yours")  # fmt: skip
        return ConnectionFailed(why)

    @classmethod
    def from_urls(
        cls, urls: str | list[str], api_key: str | None, max_attempts: int
    ) -> ClusterState:
        # A string may list several, comma separated, as SHOAL_URL does.
        given = urls.split(",") if isinstance(urls, str) else list(urls)
        nodes = [url.strip().rstrip("/") for url in given if url.strip()]
        if not nodes:
            raise ValueError("give at least one node URL")
        return cls(given=nodes, api_key=api_key, max_attempts=max_attempts)

    @property
    def nodes(self) -> list[str]:
        """One URL per node. A node the client has reached is known by the URL
        it used; one it only heard of, by the URL it advertises, but only once
        every given URL that answers is identified (until then, that node may be
        one of them)."""
        known = set(self.reached.values())
        unidentified = [url for url in self.given if url not in known]
        heard_of = [] if set(unidentified) - self._down else [
            url for node_id, url in sorted(self.advertised.items()) if node_id not in self.reached
        ]  # fmt: skip
        return unidentified + [url for _, url in sorted(self.reached.items())] + heard_of

    # ------------------------------------------------------------ planning
    def discovery_targets(self) -> list[str]:
        nodes = self.nodes
        return [n for n in nodes if n not in self._down] + [n for n in nodes if n in self._down]

    def leader_reachable(self) -> bool:
        """The leader is known by a URL this client has used: discovery may stop.
        (Its advertised URL may be a name only the nodes can resolve.)"""
        return self.leader is not None and self.leader in self.reached.values()

    def learn(self, view: dict[str, Any], reached_at: str | None = None) -> None:
        """Take what a node's ``/cluster`` says about the leader and the nodes."""
        if reached_at is not None and view.get("node_id"):
            self.reached[str(view["node_id"])] = reached_at
        vouches = reached_at is not None and _origin(reached_at) in self._given_origins
        nodes = [(view.get("node_id"), view.get("url"))]
        nodes += [(peer.get("id"), peer.get("url")) for peer in view.get("peers", [])]
        nodes += [(member.get("id"), member.get("url")) for member in view.get("members", [])]
        for node_id, url in nodes:
            if node_id and isinstance(url, str) and url:
                url = url.rstrip("/")
                if vouches:
                    self._vouched.add(url)
                if self.trusts(url):
                    self.advertised[str(node_id)] = url
                else:
                    self.refused = url
        self.leader = self.url_of(view.get("leader_id"), view.get("leader_url"))

    def url_of(self, node_id: str | None, advertised: str | None) -> str | None:
        if node_id and node_id in self.reached:
            return self.reached[node_id]
        if not advertised:
            return None
        url = advertised.rstrip("/")
        if self.trusts(url):
            return url
        self.refused = url
        return None

    def plan(self, call: Call) -> Send | None:
        """Where to send the next attempt; None when the leader must be found first."""
        if call.write:
            if self.leader is None:
                return None
            node = self.leader
        else:
            node = self._reader()
        headers = {"Content-Type": "application/json"} if call.content is not None else {}
        if self.api_key:
            headers["X-API-Key"] = self.api_key
        if call.key:
            headers["Idempotency-Key"] = call.key
        if not call.write and self.last_index:
            headers["X-Shoal-Min-Index"] = str(self.last_index)
        return Send(node, call.method, node + call.path, headers, call.params, call.content)

    def _reader(self) -> str:
        nodes = self.nodes
        followers = [n for n in nodes if n != self.leader and n not in self._down]
        pool = followers or [n for n in nodes if n not in self._down] or nodes
        self._turn += 1
        return pool[self._turn % len(pool)]

    @staticmethod
    def backoff(attempt: int) -> float:
        return float(min(2.0, 0.05 * 2**attempt))

    # ------------------------------------------------------------ outcomes
    def after_failure(self, send: Send, call: Call, attempt: int, exc: Exception) -> Decision:
        """The connection failed: the node may be down, or restarting."""
        self._down.add(send.node)
        if send.node == self.leader:
            self.leader = None
        if attempt + 1 >= self.max_attempts:
            return Decision(error=ConnectionFailed(f"no node answered {call.method} {call.path}: "
                                                   f"{exc!r}"))  # fmt: skip
        return Decision(delay=self.backoff(attempt) if call.write else 0.0)

    def after_response(self, send: Send, call: Call, attempt: int, status: int,
                       headers: dict[str, str], body: Any) -> Decision:  # fmt: skip
        self._down.discard(send.node)
        if headers.get("x-shoal-node"):
            self.reached[headers["x-shoal-node"]] = send.node
        if status == 307:
            location = headers.get("location")
            leader_id = body.get("leader_id") if isinstance(body, dict) else None
            if location:  # a relative one points at the node that answered
                parts = urlsplit(urljoin(send.node + "/", location))
                self.leader = self.url_of(leader_id, f"{parts.scheme}://{parts.netloc}")
            return Decision()
        if status < 400:
            if call.write and "x-shoal-index" in headers:
                self.last_index = max(self.last_index, int(headers["x-shoal-index"]))
            return Decision(done=True)
        problem = body if isinstance(body, dict) else {"detail": str(body)}
        if status == 429 and attempt + 1 < self.max_attempts:
            # The node sheds load (node.limits): wait as long as it asks.
            return Decision(delay=_retry_after(headers.get("retry-after")))
        error = error_for(status, problem)
        kind = error.type.rsplit("/", 1)[-1]
        retryable = status >= 500 and (kind in RETRY_TYPES or not kind)
        if not retryable or attempt + 1 >= self.max_attempts:
            return Decision(error=error)
        if kind == "follower-behind" or (not call.write and kind != "no-leader"):
            self._down.add(send.node)  # read elsewhere next
            return Decision()
        if kind in ("no-leader", "storage-failure", "unavailable"):
            self.leader = None
        return Decision(delay=self.backoff(attempt))


def _scheme(url: str) -> str:
    return urlsplit(url).scheme.lower()


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    try:
        port = parts.port or {"http": 80, "https": 443}.get(scheme)
    except ValueError:  # a port that is not one
        return (scheme, "", -1)
    return (scheme, (parts.hostname or "").lower(), port)


def tls_verify(verify: bool | str | ssl.SSLContext) -> bool | ssl.SSLContext:
    """``verify`` as httpx takes it: a CA bundle's path becomes a context
    that trusts it (``True``: the system's CAs, or ``SSL_CERT_FILE``)."""
    if isinstance(verify, str):
        return ssl.create_default_context(cafile=verify)
    return verify


def _retry_after(value: str | None) -> float:
    """Seconds to wait, from a Retry-After in seconds (at most 10)."""
    try:
        return min(10.0, max(0.0, float(value or 1)))
    except ValueError:  # an HTTP date: not sent by Shoal
        return 1.0
