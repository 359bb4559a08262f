"""The hottest public routes, answered below the web framework.

A small write or a query spent about a third of the leader's Python time in
the framework itself (routing, middleware layers, dependency solving,
query-string parsing), more than in the Raft round trip or the apply. These
routes do the same work as their FastAPI twins in ``node/routes/`` with the
same helpers (body parsing, read barrier, service calls, responses and
problems), so the answers are the same byte for byte; the twins stay
registered for the OpenAPI document and for anything these do not match.

- ``POST /libraries/{library_id}/documents``
- ``GET /libraries/{library_id}/documents/{document_id}``
- ``POST /libraries/{library_id}/query``
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar
from urllib.parse import parse_qs

from pydantic import BaseModel, TypeAdapter, ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response
from starlette.types import Scope

from node import models
from node.body import INLINE_BODY_BYTES
from node.consistency import Level, wait_for_consistency
from node.errors import MalformedBody, ShoalError
from node.problems import UNEXPECTED, problem_at, problem_from_errors
from node.responses import JSONBody, written
from node.service import Service, query_is_small, read_soon

log = logging.getLogger("shoal.http")

Model = TypeVar("Model", bound=BaseModel)
T = TypeVar("T")
_LEVEL: TypeAdapter[Level | None] = TypeAdapter(Level | None)
_FLAG: TypeAdapter[bool] = TypeAdapter(bool)

# (the request's scope, its path parameters, its body) -> the answer
Handler = Callable[[Scope, tuple[str, ...], bytes], Awaitable[Response]]


@dataclass(frozen=True)
class Route:
    method: str
    pattern: re.Pattern[str]
    template: str  # the path as the OpenAPI document and /metrics name it
    handler: Handler


class FastRoutes:
    def __init__(self, service: Service) -> None:
        self.service = service
        self.routes = (
            Route("POST", re.compile(r"/libraries/([^/]+)/documents"),
                  "/libraries/{library_id}/documents", self.create_document),
            Route("GET", re.compile(r"/libraries/([^/]+)/documents/([^/]+)"),
                  "/libraries/{library_id}/documents/{document_id}", self.get_document),
            Route("POST", re.compile(r"/libraries/([^/]+)/query"),
                  "/libraries/{library_id}/query", self.query),
        )  # fmt: skip

    def match(self, method: str, path: str) -> tuple[Route, tuple[str, ...]] | None:
        for route in self.routes:
            if method == route.method and (found := route.pattern.fullmatch(path)):
                return route, found.groups()
        return None

    async def answer(
        self, route: Route, params: tuple[str, ...], scope: Scope, body: bytes
    ) -> Response:
        """The route's answer; any error as the problem the framework would send."""
        try:
            return await route.handler(scope, params, body)
        except ShoalError as error:
            return problem_at(error, scope["path"], _query_string(scope))
        except Exception:
            log.exception("unexpected error on %s %s", scope.get("method"), scope["path"])
            return problem_at(ShoalError(UNEXPECTED), scope["path"], _query_string(scope))

    # ------------------------------------------------------------ handlers
    async def create_document(
        self, scope: Scope, params: tuple[str, ...], body: bytes
    ) -> Response:
        (library_id,) = params
        parsed = await _parse(models.DocumentCreate, scope, body)
        document, index = await self.service.add_document(library_id, parsed)
        location = f"/libraries/{library_id}/documents/{document['id']}"
        return written(document, index, 201, location)

    async def get_document(self, scope: Scope, params: tuple[str, ...], _: bytes) -> Response:
        library_id, document_id = params
        query = parse_qs(_query_string(scope), keep_blank_values=True)
        await self._read_barrier(scope, query)
        chunks = _query_value(query, "include_chunks", _FLAG, False)
        embeddings = _query_value(query, "include_embeddings", _FLAG, False)
        args = (library_id, document_id, chunks, embeddings)
        if chunks:  # a document may hold 10,000 chunks: a worker thread
            return JSONBody(await run_in_threadpool(self.service.get_document, *args))
        return JSONBody(await read_soon(self.service.get_document, *args))

    async def query(self, scope: Scope, params: tuple[str, ...], body: bytes) -> Response:
        (library_id,) = params
        await self._read_barrier(scope, parse_qs(_query_string(scope), keep_blank_values=True))
        parsed = await _parse(models.QueryRequest, scope, body)
        service = self.service
        if query_is_small(service.state.library(library_id), parsed):
            return JSONBody(await read_soon(service.query, library_id, parsed))
        return JSONBody(await run_in_threadpool(service.query, library_id, parsed))


    async def _read_barrier(self, scope: Scope, query: dict[str, list[str]]) -> None:
        headers = _headers(scope)
        chosen = _query_value(query, "consistency", _LEVEL, None)
        level = chosen or headers.get(b"x-shoal-consistency", b"eventual").decode(errors="replace")
        wanted = headers.get(b"x-shoal-min-index")
        await wait_for_consistency(
            self.service.engine, level, None if wanted is None else wanted.decode("latin-1")
        )


def _query_value(query: dict[str, list[str]], name: str, kind: TypeAdapter[T], default: T) -> T:
    """A query parameter checked as the framework checks it (same problem text)."""
    given = query.get(name)
    if not given:
        return default
    try:
        return kind.validate_python(given[-1])
    except ValidationError as exc:
        errors = [{**e, "loc": ("query", name)} for e in exc.errors()]
        raise problem_from_errors(errors) from None


def _headers(scope: Scope) -> dict[bytes, bytes]:
    return dict(scope.get("headers") or [])


def _query_string(scope: Scope) -> str:
    raw: bytes = scope.get("query_string", b"")
    return raw.decode("latin-1")


async def _parse(model: type[Model], scope: Scope, raw: bytes) -> Model:
    """As :func:`node.body.json_body` does for the framework's routes."""
    if not raw:
        raise MalformedBody("the body is empty; send a JSON object")
    if b"json" not in _headers(scope).get(b"content-type", b""):
        raise MalformedBody(
            "the body must be a JSON object sent with Content-Type: application/json"
        )
    try:
        if len(raw) < INLINE_BODY_BYTES:
            return model.model_validate_json(raw)
        return await run_in_threadpool(model.model_validate_json, raw)
    except ValidationError as exc:
        errors = [{**error, "loc": ("body", *error["loc"])} for error in exc.errors()]
        raise problem_from_errors(errors) from None

