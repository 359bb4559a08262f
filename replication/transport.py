"""Raft over HTTP: msgpack bodies under /_cluster/, guarded by the cluster secret.

One :class:`HttpTransport` per node. ``call`` sends one RPC and returns the
response or raises :class:`PeerUnreachable`; it never retries (the core
decides what to resend). Snapshots stream as raw file bytes in chunks.

:class:`FaultRules` lets tests cut links without touching the network: a
node drops what it would send to, or receive from, the peers named. It is
only reachable when the node runs with fault injection enabled.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import os
import random
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from replication.membership import CLUSTER_HEADER
from replication.messages import Message, decode, encode
from replication.peer_http import PeerHttp
from replication.peer_http import PeerUnreachable as PeerUnreachable

SECRET_HEADER = "X-Shoal-Cluster-Secret"
MSGPACK = "application/msgpack"
SNAPSHOT_CHUNK = 4 << 20
SNAPSHOT_CHUNK_SECONDS = 30.0  # one chunk, written by the follower
SNAPSHOT_INSTALL_SECONDS = 3600.0  # the follower building the new state
SNAPSHOT_POLL_SECONDS = 0.25


@dataclass
class FaultRules:
    """Links this node pretends are cut, and a lossy network (tests only).

    ``drop_rate`` loses a request or its answer, ``duplicate_rate`` sends a
    request twice, ``max_delay`` holds each request back a random time, so
    concurrent ones arrive out of order.
    """

    drop_to: set[str] = field(default_factory=set)
    drop_from: set[str] = field(default_factory=set)
    drop_rate: float = 0.0
    duplicate_rate: float = 0.0
    max_delay: float = 0.0
    snapshot_chunk_delay: float = 0.0  # a slow link for snapshot transfers
    rng: random.Random = field(default_factory=random.Random)

    def blocks_outgoing(self, peer: str) -> bool:
        return peer in self.drop_to

    def blocks_incoming(self, peer: str) -> bool:
        return peer in self.drop_from


def secret_matches(offered: str | None, secret: str | None) -> bool:
    if secret is None:
        return True
    return offered is not None and hmac.compare_digest(offered.encode(), secret.encode())


class HttpTransport:
    def __init__(
        self,
        node_id: str,
        peer_urls: dict[str, str],
        secret: str | None,
        timeout: float,
        faults: FaultRules,
        snapshot_chunk_bytes: int = SNAPSHOT_CHUNK,
        cluster_id: str = "",
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.node_id = node_id
        self.snapshot_chunk_bytes = snapshot_chunk_bytes
        self.peer_urls = peer_urls
        self.faults = faults
        # Every request names our cluster and this node; peers refuse others.
        headers = {CLUSTER_HEADER: cluster_id, "X-Shoal-From": node_id}
        if secret:
            headers[SECRET_HEADER] = secret
        self._headers, self._timeout, self._tls = headers, timeout, tls
        self._peers = {
            peer: PeerHttp(url, headers, timeout, tls) for peer, url in peer_urls.items()
        }
        self._snapshot_client = httpx.AsyncClient(
            headers=headers, timeout=SNAPSHOT_CHUNK_SECONDS, verify=tls or True
        )

    def set_peers(self, peer_urls: dict[str, str]) -> None:
        """Talk to these peers from now on (the member list changed)."""
        for peer in set(self._peers) - set(peer_urls):
            client = self._peers.pop(peer)
            asyncio.ensure_future(client.close())  # noqa: RUF006 - nothing to wait for
        for peer, url in peer_urls.items():
            if peer not in self._peers or self.peer_urls.get(peer) != url:
                self._peers[peer] = PeerHttp(url, self._headers, self._timeout, self._tls)
        self.peer_urls = dict(peer_urls)

    def _url(self, peer: str) -> str:
        url = self.peer_urls.get(peer)
        if url is None:
            raise PeerUnreachable(f"{peer} is no longer a member")
        return url

    def features_of(self, peer: str) -> frozenset[str] | None:
        """What ``peer`` said it supports in its last answer (None: no answer yet)."""
        client = self._peers.get(peer)
        return client.features if client is not None else None

    async def call(
        self, peer: str, message: Message, headers: dict[str, str] | None = None
    ) -> Message | None:
        """The peer's answer; None for a message that has none (TimeoutNow).
        ``headers`` go with this request only."""
        faults = self.faults
        if faults.blocks_outgoing(peer):
            raise PeerUnreachable(f"link to {peer} is cut (fault injection)")
        if faults.max_delay:
            await asyncio.sleep(faults.rng.uniform(0, faults.max_delay))
        if faults.drop_rate and faults.rng.random() < faults.drop_rate:
            raise PeerUnreachable(f"request to {peer} dropped (fault injection)")
        body = encode(message)
        if faults.duplicate_rate and faults.rng.random() < faults.duplicate_rate:
            asyncio.ensure_future(self._post(peer, body, headers=headers))  # noqa: RUF006
        answer = await self._post(peer, body, headers=headers)
        if faults.drop_rate and faults.rng.random() < faults.drop_rate:
            raise PeerUnreachable(f"answer from {peer} dropped (fault injection)")
        return decode(answer) if answer else None

    async def _post(
        self,
        peer: str,
        body: bytes,
        path: str = "/_cluster/raft",
        headers: dict[str, str] | None = None,
    ) -> bytes:
        client = self._peers.get(peer)
        if client is None:
            raise PeerUnreachable(f"{peer} is no longer a member")
        try:
            status, answer = await client.post(path, body, MSGPACK, headers)
        except PeerUnreachable as exc:
            raise PeerUnreachable(f"{peer}: {exc}") from None
        if status != 200:
            raise PeerUnreachable(f"{peer} answered {status}")
        return answer

    async def send_snapshot(
        self,
        peer: str,
        path: Path,
        index: int,
        term: int,
        leader_term: int,
        rpc: int,
        progressed: Callable[[], None],
    ) -> Message:
        """Stream a snapshot file from disk, one chunk at a time, in order.

        Each chunk the follower takes calls ``progressed``; any chunk's answer
        may already be the follower's SnapshotResponse (it needs no snapshot,
        or installed it after the last chunk). The file stays open, so it may
        be pruned meanwhile.
        """
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError as exc:
            raise PeerUnreachable(f"snapshot {path.name} cannot be read: {exc}") from None
        try:
            size = os.fstat(fd).st_size
            offset = 0
            while True:
                if self.faults.blocks_outgoing(peer):
                    raise PeerUnreachable(f"link to {peer} is cut (fault injection)")
                if self.faults.snapshot_chunk_delay:
                    await asyncio.sleep(self.faults.snapshot_chunk_delay)
                chunk = await asyncio.to_thread(os.pread, fd, self.snapshot_chunk_bytes, offset)
                done = offset + len(chunk) >= size
                params: dict[str, str | int] = {"index": index, "term": term,
                          "leader": self.node_id, "leader_term": leader_term, "rpc": rpc,
                          "offset": offset, "done": int(done)}  # fmt: skip
                try:
                    response = await self._snapshot_client.post(
                        f"{self._url(peer)}/_cluster/snapshot", params=params,
                        content=chunk,
                        headers={"content-type": "application/octet-stream"},
                    )  # fmt: skip
                except httpx.HTTPError as exc:
                    raise PeerUnreachable(f"{peer}: {exc!r}") from None
                if response.status_code != 200:
                    raise PeerUnreachable(
                        f"{peer} refused snapshot chunk at {offset}: {response.status_code}"
                    )
                if response.content:
                    return decode(response.content)
                progressed()
                if done:
                    break
                offset += len(chunk)
        finally:
            os.close(fd)
        return await self._await_install(peer, params, progressed)

    async def _await_install(
        self, peer: str, params: dict[str, str | int], progressed: Callable[[], None]
    ) -> Message:
        """The follower builds the new state after the last chunk; each poll
        it answers (still installing) counts as progress."""
        deadline = asyncio.get_running_loop().time() + SNAPSHOT_INSTALL_SECONDS
        while asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(SNAPSHOT_POLL_SECONDS)
            try:
                response = await self._snapshot_client.post(
                    f"{self._url(peer)}/_cluster/snapshot/status", params=params
                )
            except httpx.HTTPError as exc:
                raise PeerUnreachable(f"{peer}: {exc!r}") from None
            if response.status_code != 200:
                raise PeerUnreachable(f"{peer} failed to install the snapshot: "
                                      f"{response.status_code}")  # fmt: skip
            if response.content:
                return decode(response.content)
            progressed()
        raise PeerUnreachable(f"{peer} did not install the snapshot in time")

    async def read_index(self, leader: str) -> int:
        """Ask the leader for a linearizable read index."""
        if self.faults.blocks_outgoing(leader):
            raise PeerUnreachable(f"link to {leader} is cut (fault injection)")
        answer = await self._post(leader, b"", "/_cluster/read_index")
        try:
            return int(json.loads(answer)["index"])
        except (ValueError, KeyError, TypeError) as exc:
            raise PeerUnreachable(
                f"{leader} answered a read index that is not one: {exc}"
            ) from None

    async def close(self) -> None:
        for peer in self._peers.values():
            await peer.close()
        await self._snapshot_client.aclose()
