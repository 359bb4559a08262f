"""One ASGI layer in front of the app: node header, API key, body limit, metrics.

A plain ASGI middleware (not BaseHTTPMiddleware) so request bodies stream
through untouched and the size limit applies while reading, even when a
client sends no Content-Length.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from node.access import is_cluster_lever, needed_role
from node.errors import (
    InvalidRequest,
    PayloadTooLarge,
    PeerCertificateMissing,
    RoleTooLow,
    ShoalError,
    TooManyRequests,
    Unauthorized,
)
from node.fast_routes import FastRoutes
from node.idempotency import MAX_KEY, fingerprint, request_fingerprint, request_key, valid_key
from node.keys import KeySource, Role, digest
from node.limits import Admission
from node.metrics import NodeMetrics
from node.problems import UNEXPECTED
from node.tls import PEER_CERT_KEY, peer_names
from replication import features

log = logging.getLogger("shoal.http")
FEATURES = " ".join(sorted(features.OURS)).encode()


class _TooLarge(Exception):
    pass


class _Disconnected(Exception):
    """The client went away before its body arrived."""

    def __init__(self, message: Message) -> None:
        super().__init__("client disconnected")
        self.message = message


# A path answered without the web framework: (headers, body) -> msgpack answer.
FastRoute = Callable[[dict[bytes, bytes], bytes], Awaitable[bytes]]


class NodeMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        node_id: str,
        metrics: NodeMetrics,
        max_body_bytes: int,
        keys: KeySource,
        require_peer_cert: bool = False,
        admission: Admission | None = None,
        fast_routes: dict[tuple[str, str], FastRoute] | None = None,
        json_routes: FastRoutes | None = None,
    ) -> None:
        self.app = app
        self.fast_routes = fast_routes or {}
        self.json_routes = json_routes
        self.node_id = node_id.encode()
        self.metrics = metrics
        self.max_body_bytes = max_body_bytes
        self.keys = keys
        self.require_peer_cert = require_peer_cert
        self.admission = admission or Admission(0, 1, 1 << 30)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        # the status sent, and how much of the answer: 0 none, 1 started, 2 whole
        status = {"code": 500, "sent": 0}
        label = None  # the route's template, when answered below the framework

        async def send_tagged(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
                status["sent"] = 1
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-shoal-node", self.node_id),
                                      (b"x-shoal-features", FEATURES)]  # fmt: skip
            elif message["type"] == "http.response.body" and not message.get("more_body"):
                status["sent"] = 2
            await send(message)

        key = dict(scope.get("headers") or []).get(b"idempotency-key")
        token = request_key.set(key.decode(errors="replace") if key is not None else None)
        printed = request_fingerprint.set(None)
        certified = peer_names.set(scope.get(PEER_CERT_KEY))
        admitted_write = False
        try:
            refusal = self._refusal(scope)
            if refusal is None and key is not None and not valid_key(request_key.get() or ""):
                refusal = InvalidRequest(
                    f"Idempotency-Key must be 1 to {MAX_KEY} printable characters"
                )
            if refusal is None:
                try:
                    admitted_write = self._admit(scope)
                except TooManyRequests as limited:
                    refusal = limited
            method = scope.get("method", "")
            fast = self.fast_routes.get((method, scope["path"]))
            routes = self.json_routes
            public = None
            if fast is None and routes is not None:
                public = routes.match(method, scope["path"])
            if refusal is not None:
                await _send_problem(send_tagged, refusal, scope["path"])
            elif fast is not None:
                try:
                    body = await self._body(receive, scope)
                except _Disconnected:
                    return  # the peer went away before its message arrived
                await _answer_fast(fast, scope, body, send_tagged)
            elif public is not None and routes is not None:
                route, params = public
                label = route.template
                try:
                    body = await self._body(receive, scope)
                except _Disconnected:
                    return
                answer = await routes.answer(route, params, scope, body)
                await answer(scope, receive, send_tagged)
            elif _slashed(scope["path"]):
                await _send_redirect(send_tagged, scope)
            else:
                await self._framework(scope, await self._buffered(receive, scope), send_tagged,
                                      lambda: status["sent"])  # fmt: skip
        except _TooLarge:
            await _send_problem(
                send_tagged,
                PayloadTooLarge(
                    f"the request body is larger than this node accepts "
                    f"({self.max_body_bytes} bytes); send fewer chunks per request"
                ),
                scope["path"],
            )
        finally:
            if admitted_write:
                self.admission.write_done()
            request_key.reset(token)
            request_fingerprint.reset(printed)
            peer_names.reset(certified)
            if label is None:
                label = getattr(scope.get("route"), "path", "unmatched")
            if (scope.get("method", ""), scope["path"]) in self.fast_routes:
                label = scope["path"]
            method = scope.get("method", "")
            self.metrics.requests.labels(method, label, str(status["code"])).inc()
            self.metrics.latency.labels(method, label).observe(time.perf_counter() - started)

    async def _framework(
        self, scope: Scope, receive: Receive, send: Send, progress: Callable[[], int]
    ) -> None:
        """The app's answer. The framework answers an error no handler took
        with a 500 problem (node.problems logs it), then raises it again so
        that the server logs it twice and drops the connection; it stops
        here. ``progress``: 0 nothing sent yet, 1 started, 2 answered whole."""
        try:
            await self.app(scope, receive, send)
        except Exception:
            sent = progress()
            if sent == 2:
                return
            if sent == 1:
                raise  # part of an answer went out: only closing the connection tells
            log.exception("unexpected error on %s %s", scope.get("method"), scope["path"])
            await _send_problem(send, ShoalError(UNEXPECTED), scope["path"])

    def _admit(self, scope: Scope) -> bool:
        """Let the request in under the limits (node.limits); True for a
        write, which holds a place until it is answered."""
        method, path = scope.get("method", ""), scope["path"]
        needed = needed_role(method, path)
        if needed is None:
            return False  # probes, peers and the cluster levers
        headers = dict(scope.get("headers") or [])
        offered = headers.get(b"x-api-key") or headers.get(b"authorization")
        client = digest(offered.decode(errors="replace")).hex() if offered else (
            "address " + str((scope.get("client") or ("?",))[0])
        )  # fmt: skip
        write = needed is not Role.READ and method not in ("GET", "HEAD")
        self.admission.admit(client, write)
        return write

    def _refusal(self, scope: Scope) -> ShoalError | None:
        path, ring = scope["path"], self.keys.ring
        # With mutual TLS the cluster secret alone is not enough: a peer also
        # shows a certificate; an operator at the membership and leadership
        # levers may show an admin key instead.
        lever = is_cluster_lever(path)
        unproven = self.require_peer_cert and scope.get(PEER_CERT_KEY) is None
        if unproven and (path.startswith("/_cluster/") or (lever and not ring.roles)):
            return PeerCertificateMissing(
                "cluster endpoints take only connections with a peer certificate signed "
                "by this cluster's --peer-ca" + (" (or an admin API key)" if lever else "")
            )
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_body_bytes:
            return PayloadTooLarge(
                f"the request body has {int(length)} bytes; this node accepts at most "
                f"{self.max_body_bytes} bytes per request; send fewer chunks per request"
            )
        method = scope.get("method", "")
        needed = Role.ADMIN if unproven and lever else needed_role(method, path)
        if not ring.roles or needed is None:
            return None
        offered = headers.get(b"x-api-key", b"").decode(errors="replace")
        bearer = headers.get(b"authorization", b"").decode(errors="replace")
        if bearer.lower().startswith("bearer "):
            offered = offered or bearer[7:].strip()
        if not offered:
            return Unauthorized("this node requires an API key (X-API-Key or Bearer token)")
        role = ring.role_of(offered)
        if role is None:
            return Unauthorized("the API key is not valid for this node")
        if role < needed:
            return RoleTooLow(f"this API key has the {role.label} role; {method} {path:.200} "
                             f"needs the {needed.label} role")  # fmt: skip
        return None

    async def _buffered(self, receive: Receive, scope: Scope) -> Receive:
        """Read the whole body (refusing it past the limit), then replay it."""
        try:
            body = await self._body(receive, scope)
        except _Disconnected as gone:
            return _replay([gone.message], receive)
        return _replay([{"type": "http.request", "body": body, "more_body": False}], receive)

    async def _body(self, receive: Receive, scope: Scope) -> bytes:
        """The whole request body, refused past the limit."""
        chunks: list[bytes] = []
        seen = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                raise _Disconnected(message)
            chunk = message.get("body", b"")
            seen += len(chunk)
            if seen > self.max_body_bytes:
                raise _TooLarge
            chunks.append(chunk)
            if not message.get("more_body", False):
                body = b"".join(chunks)
                if request_key.get() is not None:
                    request_fingerprint.set(fingerprint(
                        scope.get("method", ""), scope["path"], scope.get("query_string", b""),
                        body,
                    ))  # fmt: skip
                return body


def _slashed(path: str) -> bool:
    """A path with a trailing slash: no route has one."""
    return len(path) > 1 and path.endswith("/")


async def _send_redirect(send: Send, scope: Scope) -> None:
    """307 to the path without its trailing slash. The Location is relative:
    built from the Host header it would send clients wherever the request
    said it was addressed to."""
    raw: bytes = scope.get("raw_path") or scope["path"].encode()
    # never "//host" (nor "/\\host", which browsers read alike): another site
    target = b"/" + raw.rstrip(b"/").lstrip(b"/\\")
    query: bytes = scope.get("query_string", b"")
    if query:
        target += b"?" + query
    await send({"type": "http.response.start", "status": 307,
                "headers": [(b"location", target), (b"content-length", b"0")]})  # fmt: skip
    await send({"type": "http.response.body", "body": b""})


def _replay(messages: list[Message], receive: Receive) -> Receive:
    pending = list(messages)

    async def replaying_receive() -> Message:
        if pending:
            return pending.pop(0)
        return await receive()

    return replaying_receive


async def _answer_fast(route: FastRoute, scope: Scope, body: bytes, send: Send) -> None:
    try:
        answer = await route(dict(scope.get("headers") or []), body)
    except ShoalError as error:
        await _send_problem(send, error, scope["path"])
        return
    headers = [(b"content-type", b"application/msgpack"),
               (b"content-length", str(len(answer)).encode())]  # fmt: skip
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": answer})


async def _send_problem(send: Send, error: ShoalError, path: str) -> None:
    body = json.dumps(error.problem(path)).encode()
    headers: list[tuple[bytes, bytes]] = [
        (b"content-type", b"application/problem+json"),
        (b"content-length", str(len(body)).encode()),
    ]
    headers += [(k.lower().encode(), v.encode()) for k, v in error.headers.items()]
    start: dict[str, Any] = {
        "type": "http.response.start",
        "status": error.status,
        "headers": headers,
    }
    await send(start)
    await send({"type": "http.response.body", "body": body})
