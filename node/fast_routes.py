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
from typing import Any, TypeVar
from urllib.parse import parse_qs

from pydantic import BaseModel, TypeAdapter, ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import URL
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
            failed = error
        except Exception:
            log.exception("unexpected error on %s %s", scope.get("method"), scope["path"])
            failed = ShoalError(UNEXPECTED)
        url = URL(scope=scope)  # the path escaped again, as in a Location header
        return problem_at(failed, url.path, url.query)

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
        query = _QueryParams(scope)
        level = query.value("consistency", _LEVEL, None)
        if not query.errors:
            await self._read_barrier(scope, level)
        chunks = query.value("include_chunks", _FLAG, False)
        embeddings = query.value("include_embeddings", _FLAG, False)
        query.check()
        args = (library_id, document_id, chunks, embeddings)
        if chunks:  # a document may hold 10,000 chunks: a worker thread
            return JSONBody(await run_in_threadpool(self.service.get_document, *args))
        return JSONBody(await read_soon(self.service.get_document, *args))

    async def query(self, scope: Scope, params: tuple[str, ...], body: bytes) -> Response:
        (library_id,) = params
        query = _QueryParams(scope)
        level = query.value("consistency", _LEVEL, None)
        if not query.errors:
            await self._read_barrier(scope, level)
        parsed = await _parse(models.QueryRequest, scope, body)
        query.check()
        service = self.service
        if query_is_small(service.state.library(library_id), parsed):
            return JSONBody(await read_soon(service.query, library_id, parsed))
        return JSONBody(await run_in_threadpool(service.query, library_id, parsed))

    async def _read_barrier(self, scope: Scope, chosen: str | None) -> None:
        given = _header(scope, b"x-shoal-consistency")
        level = chosen or ("eventual" if given is None else given.decode("latin-1"))
        wanted = _header(scope, b"x-shoal-min-index")
        await wait_for_consistency(
            self.service.engine, level, None if wanted is None else wanted.decode("latin-1")
        )


class _QueryParams:
    """Query parameters checked as the framework checks them. As there, a
    bad one does not stop the request at once: the body is still read (its
    problems come first), and every bad parameter is reported together."""

    def __init__(self, scope: Scope) -> None:
        self.given = parse_qs(_query_string(scope), keep_blank_values=True)
        self.errors: list[Any] = []

    def value(self, name: str, kind: TypeAdapter[T], default: T) -> T:
        given = self.given.get(name)
        if not given:
            return default
        try:
            return kind.validate_python(given[-1])  # the last of a repeated one, as there
        except ValidationError as exc:
            self.errors += [{**e, "loc": ("query", name)} for e in exc.errors()]
            return default

    def check(self) -> None:
        if self.errors:
            raise problem_from_errors(self.errors)


def _header(scope: Scope, name: bytes) -> bytes | None:
    """The first of the request's headers called ``name`` (as Starlette reads them)."""
    for key, value in scope.get("headers") or ():
        if key == name:
            found: bytes = value
            return found
    return None


def _query_string(scope: Scope) -> str:
    raw: bytes = scope.get("query_string", b"")
    return raw.decode("latin-1")


async def _parse(model: type[Model], scope: Scope, raw: bytes) -> Model:
    """As :func:`node.body.json_body` does for the framework's routes."""
    if not raw:
        raise MalformedBody("the body is empty; send a JSON object")
    if b"json" not in (_header(scope, b"content-type") or b""):
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

