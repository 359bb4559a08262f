"""Keep-alive HTTP/1.1 to one peer, for the small RPCs Raft sends all the time.

Profiled on a 3-node cluster under small writes, the leader spent a fifth of
its CPU inside httpx (connection pool bookkeeping, async-library detection on
every response). Raft RPCs need none of that: a POST with a bytes body, an
answer with a Content-Length. This client writes the request in one go and
parses only the status line, Content-Length and Connection. Any error closes
the connection it happened on; the caller sees :class:`PeerUnreachable`.
"""

from __future__ import annotations

import asyncio
import ssl
from urllib.parse import urlsplit

MAX_IDLE = 8
MAX_HEADER_LINES = 100


FEATURES_HEADER_BYTES = b"x-shoal-features"


class PeerUnreachable(Exception):
    pass


_Connection = tuple[asyncio.StreamReader, asyncio.StreamWriter]


class PeerHttp:
    def __init__(
        self,
        base_url: str,
        headers: dict[str, str],
        timeout: float,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or parts.hostname is None:
            raise ValueError(f"peer URL {base_url!r} is not http(s)://host:port")
        self.host = parts.hostname
        secure = parts.scheme == "https"
        self.port = parts.port or (443 if secure else 80)
        # https: the peer's certificate is checked (and ours shown, for mutual TLS)
        self.tls = (tls or ssl.create_default_context()) if secure else None
        self.prefix = parts.path.rstrip("/")
        self.timeout = timeout
        host_header = f"Host: {self.host}:{self.port}\r\n"
        self._fixed = host_header + "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        self._idle: list[_Connection] = []
        self._closed = False
        # What the peer's last answer said it supports (X-Shoal-Features);
        # None until it answered (see replication.features).
        self.features: frozenset[str] | None = None

    async def post(
        self, path: str, body: bytes, content_type: str, headers: dict[str, str] | None = None
    ) -> tuple[int, bytes]:
        """(status, body) of one POST; PeerUnreachable on any failure or timeout."""
        extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
        request = (
            f"POST {self.prefix}{path} HTTP/1.1\r\n{self._fixed}{extra}"
            f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode() + body
        try:
            async with asyncio.timeout(self.timeout):
                return await self._exchange(request)
        except TimeoutError:
            raise PeerUnreachable(f"no answer within {self.timeout:.2f}s") from None
        except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
            raise PeerUnreachable(repr(exc)) from None

    async def _exchange(self, request: bytes) -> tuple[int, bytes]:
        while self._idle:
            # A kept connection the peer closed meanwhile fails before any
            # answer arrives; the request then goes again on a new one.
            # (Raft messages may arrive twice; the core handles that.)
            connection = self._idle.pop()
            try:
                return await self._on(connection, request)
            except _NoAnswer:
                continue
        if self.tls is None:
            connection = await asyncio.open_connection(self.host, self.port)
        else:
            connection = await asyncio.open_connection(
                self.host, self.port, ssl=self.tls, server_hostname=self.host
            )
        return await self._on(connection, request)

    async def _on(self, connection: _Connection, request: bytes) -> tuple[int, bytes]:
        reader, writer = connection
        keep = False
        try:
            try:
                writer.write(request)
                status_line = await reader.readline()
            except ConnectionError as exc:
                raise _NoAnswer(repr(exc)) from None
            if not status_line:
                raise _NoAnswer("the peer closed the connection")
            status, length, reusable, features = await _read_head(status_line, reader)
            body = await reader.readexactly(length)
            self.features = features
            keep = reusable  # only once the whole answer is read: nothing left on the wire
            return status, body
        finally:
            if keep and not self._closed and len(self._idle) < MAX_IDLE:
                self._idle.append(connection)
            else:
                writer.close()

    async def close(self) -> None:
        self._closed = True  # requests still in flight close their connections
        idle, self._idle = self._idle, []
        for _, writer in idle:
            writer.close()


class _NoAnswer(ConnectionError):
    """The connection ended before the first byte of an answer."""


async def _read_head(
    status_line: bytes, reader: asyncio.StreamReader
) -> tuple[int, int, bool, frozenset[str]]:
    words = status_line.split(None, 2)
    if len(words) < 2 or not words[0].startswith(b"HTTP/1.") or not words[1].isdigit():
        raise ValueError(f"not an HTTP answer: {status_line[:80]!r}")
    status = int(words[1])
    length: int | None = None
    keep = words[0] == b"HTTP/1.1"
    features: frozenset[str] = frozenset()
    for _ in range(MAX_HEADER_LINES):
        line = await reader.readline()
        if line in (b"\r\n", b"\n"):
            break
        if not line:
            raise asyncio.IncompleteReadError(b"", None)
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value.strip())
        elif name == b"connection":
            keep = value.strip().lower() == b"keep-alive" or (
                keep and value.strip().lower() != b"close"
            )
        elif name == b"transfer-encoding":
            raise ValueError("chunked answers are not expected from a peer")
        elif name == FEATURES_HEADER_BYTES:
            features = frozenset(value.decode(errors="replace").split())
    else:
        raise ValueError("too many header lines in the answer")
    if length is None:
        raise ValueError("the answer has no Content-Length")
    return status, length, keep, features
