"""Every error leaves the node as application/problem+json with a readable detail."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from starlette.routing import Match, Route

from node.errors import PROBLEM_BASE, InvalidRequest, MalformedBody, NotLeaderError, ShoalError

log = logging.getLogger("shoal.http")

PROBLEM_JSON = "application/problem+json"


def problem_response(error: ShoalError, request: Request) -> JSONResponse:
    return problem_at(error, request.url.path, request.url.query)


def problem_at(error: ShoalError, path: str, query: str = "") -> JSONResponse:
    """The problem+json answer to a request for ``path`` (and ``query``)."""
    headers = dict(error.headers)
    if isinstance(error, NotLeaderError):
        # 307 keeps the method and body: the client re-sends to the leader.
        target = error.leader_url + path
        if query:
            target += "?" + query
        headers["Location"] = target
    return JSONResponse(
        error.problem(path), status_code=error.status, media_type=PROBLEM_JSON, headers=headers
    )


def _methods_at(request: Request) -> list[str]:
    """Every method some route answers at the request's path."""
    methods: set[str] = set()
    for route in request.app.router.routes:
        if not isinstance(route, Route) or not route.methods:
            continue
        if route.matches(request.scope)[0] is not Match.NONE:
            methods |= route.methods
    order = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"]
    return sorted(methods, key=lambda name: (order.index(name) if name in order else 9, name))


UNEXPECTED = (
    "the node hit an unexpected error; nothing was changed unless the response said so; "
    "see the node's log"
)


def _where(loc: Sequence[Any]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path")]
    text = ""
    for part in parts:
        text += f"[{part}]" if part.isdigit() else (f".{part}" if text else part)
    return text or "body"


def _sentence(error: dict[str, Any]) -> str:
    where = _where(error.get("loc", ()))
    kind = error.get("type", "")
    if kind == "missing":
        return f"{where} is required"
    if kind == "extra_forbidden":
        return f"unknown field {where!r}"
    given = error.get("input")
    shown = repr(given) if not isinstance(given, (dict, list)) else type(given).__name__
    return f"{where}: {error.get('msg', 'invalid value')} (got {shown})"


def validation_error(exc: RequestValidationError) -> ShoalError:
    return problem_from_errors(list(exc.errors()))


def problem_from_errors(errors: list[Any]) -> ShoalError:
    """One readable problem from pydantic's error list (locations start at "body")."""
    if any(e.get("type") == "json_invalid" for e in errors):
        ctx = next(e for e in errors if e.get("type") == "json_invalid").get("ctx", {})
        return MalformedBody(f"the body is not valid JSON ({ctx.get('error', 'parse error')})")
    if any(
        _where(e.get("loc", ())) == "body" and isinstance(e.get("input"), bytes) for e in errors
    ):
        return MalformedBody(
            "the body must be a JSON object sent with Content-Type: application/json"
        )
    sentences = [_sentence(error) for error in errors[:10]]
    more = f" and {len(errors) - 10} more problems" if len(errors) > 10 else ""
    return InvalidRequest(
        "; ".join(sentences) + more,
        errors=[{"loc": _where(e.get("loc", ())), "message": e.get("msg")} for e in errors[:50]],
    )


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ShoalError)
    async def _shoal(request: Request, exc: ShoalError) -> JSONResponse:
        return problem_response(exc, request)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        return problem_response(validation_error(exc), request)

    @app.exception_handler(HTTPException)
    async def _http(request: Request, exc: HTTPException) -> JSONResponse:
        detail = exc.detail if isinstance(exc.detail, str) else "request refused"
        if exc.status_code == 404 and detail == "Not Found":
            detail = f"there is no endpoint at {request.url.path}"
        headers = dict(exc.headers or {})
        if exc.status_code == 405:
            detail = f"{request.method} is not allowed on {request.url.path}"
            # The framework lists only the first route of the path it found.
            headers["Allow"] = ", ".join(_methods_at(request))
        body = {
            "type": PROBLEM_BASE + f"http-{exc.status_code}",
            "title": detail,
            "status": exc.status_code,
            "detail": detail,
            "instance": request.url.path,
        }
        return JSONResponse(body, exc.status_code, headers=headers, media_type=PROBLEM_JSON)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return problem_response(ShoalError(UNEXPECTED), request)


# What every operation may answer besides its success, in the OpenAPI
# document: all of it problem+json (see docs/api.md).
_REFUSALS = {
    "400": "The body is not JSON, or not sent as application/json",
    "401": "The API key is missing or wrong",
    "403": "The API key's role does not allow this (the detail names the role needed)",
    "404": "No such library, document, chunk or path",
    "409": "A name or id already in use, or a change that lost a race with another",
    "413": "The body is over --max-body-bytes",
    "422": "A field is wrong, or the answer would be over --max-answer-bytes",
    "429": "Over the client's --rate-limit or the node's --max-writes-in-flight; see Retry-After",
    "503": "The node cannot serve this now (no leader, catching up, a dependency missing); "
    "see Retry-After",
}
_REDIRECT = "Sent to a follower: send it again to the leader, at the Location given"
_PROBLEM = {
    "type": "object",
    "title": "Problem",
    "description": "RFC 9457 problem details",
    "required": ["type", "title", "status", "detail"],
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "instance": {"type": "string"},
    },
}


def document(app: FastAPI) -> None:
    """List the problem+json answers on every operation of the app's OpenAPI
    document (the framework documents a JSON 422 only)."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = generate()
        schema.setdefault("components", {}).setdefault("schemas", {})["Problem"] = _PROBLEM
        problem = {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}}
        for operations in schema.get("paths", {}).values():
            for method, operation in operations.items():
                responses = operation.setdefault("responses", {})
                refusals = dict(_REFUSALS)
                if method != "get":
                    refusals["307"] = _REDIRECT
                for status, description in refusals.items():
                    responses[status] = {"description": description, "content": problem}
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
