"""The hottest public routes, answered below the web framework.

A small write or a query spent about a third of the leader's Python time in
the framework itself (routing, middleware layers, dependency solving,
query-string parsing), more than in the Raft round trip or the apply. These
routes do the same work as their FastAPI twins in ``node/routes/`` with the
same helpers (body parsing, read barrier, service calls, responses and
problems), so the answers are the same byte for byte; the twins stay
registered for the OpenAPI document and for anything these do not match.

- ``POST /libraries/{library_id}/documents``
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
# The query parameter, checked as the framework checks it (same problem text).
_LEVEL: TypeAdapter[Level] = TypeAdapter(Level)

# (the request's scope, its path parameter, its body) -> the answer
Handler = Callable[[Scope, str, bytes], Awaitable[Response]]


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
            Route("POST", re.compile(r"/libraries/([^/]+)/query"),
                  "/libraries/{library_id}/query", self.query),
        )  # fmt: skip

    def match(self, method: str, path: str) -> tuple[Route, str] | None:
        for route in self.routes:
            if method == route.method and (found := route.pattern.fullmatch(path)):
                return route, found.group(1)
        return None

    async def answer(self, route: Route, library_id: str, scope: Scope, body: bytes) -> Response:
        """The route's answer; any error as the problem the framework would send."""
        try:
            return await route.handler(scope, library_id, body)
        except ShoalError as error:
            return problem_at(error, scope["path"], _query_string(scope))
        except Exception:
            log.exception("unexpected error on %s %s", scope.get("method"), scope["path"])
            return problem_at(ShoalError(UNEXPECTED), scope["path"], _query_string(scope))

    # ------------------------------------------------------------ handlers
    async def create_document(self, scope: Scope, library_id: str, body: bytes) -> Response:
        parsed = await _parse(models.DocumentCreate, scope, body)
        document, index = await self.service.add_document(library_id, parsed)
        location = f"/libraries/{library_id}/documents/{document['id']}"
        return written(document, index, 201, location)

    async def query(self, scope: Scope, library_id: str, body: bytes) -> Response:
        headers = _headers(scope)
        levels = parse_qs(_query_string(scope), keep_blank_values=True).get("consistency")
        if levels:
            try:
                level: str = _LEVEL.validate_python(levels[-1])
            except ValidationError as exc:
                errors = [{**e, "loc": ("query", "consistency")} for e in exc.errors()]
                raise problem_from_errors(errors) from None
        else:
            level = headers.get(b"x-shoal-consistency", b"eventual").decode(errors="replace")
        wanted = headers.get(b"x-shoal-min-index")
        await wait_for_consistency(
            self.service.engine, level, None if wanted is None else wanted.decode("latin-1")
        )
        parsed = await _parse(models.QueryRequest, scope, body)
        service = self.service
        if query_is_small(service.state.library(library_id), parsed):
            return JSONBody(await read_soon(service.query, library_id, parsed))
        return JSONBody(await run_in_threadpool(service.query, library_id, parsed))


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

