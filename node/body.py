"""Request bodies parsed straight from bytes by pydantic's JSON parser.

Bulk writes carry tens of thousands of floats; ``json.loads`` followed by
validation costs about four times what ``model_validate_json`` does, and it
would run on the event loop. Routes that take large bodies use :func:`json_body`;
their schema still appears in the OpenAPI document (see :func:`document`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from fastapi import FastAPI, Request
from pydantic import BaseModel, ValidationError
from starlette.concurrency import run_in_threadpool

from node.errors import MalformedBody
from node.problems import problem_from_errors

Model = TypeVar("Model", bound=BaseModel)
_REF = "#/components/schemas/{model}"
_MODELS: list[type[BaseModel]] = []
# Bodies smaller than this are validated on the event loop (a thread hop
# would cost more than the parse); larger ones on a worker thread.
INLINE_BODY_BYTES = 64 << 10


def json_body(model: type[Model]) -> Callable[[Request], Awaitable[Model]]:
    _MODELS.append(model)

    async def parse(request: Request) -> Model:
        raw = await request.body()
        if not raw:
            raise MalformedBody("the body is empty; send a JSON object")
        if "json" not in request.headers.get("content-type", ""):
            raise MalformedBody(
                "the body must be a JSON object sent with Content-Type: application/json"
            )
        try:
            if len(raw) < INLINE_BODY_BYTES:
                return model.model_validate_json(raw)
            # Validating a large body holds the GIL for a while: not on the
            # event loop, where Raft's heartbeats are sent.
            return await run_in_threadpool(model.model_validate_json, raw)
        except ValidationError as exc:
            errors = [{**error, "loc": ("body", *error["loc"])} for error in exc.errors()]
            raise problem_from_errors(errors) from None

    return parse


def body_schema(model: type[BaseModel]) -> dict[str, Any]:
    """``openapi_extra`` for a route whose body is parsed by :func:`json_body`."""
    return {
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": {"$ref": _REF.format(model=model.__name__)}}
            },
        }
    }


def document(app: FastAPI) -> None:
    """Add the raw-body models to the app's OpenAPI components."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = generate()
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        for model in _MODELS:
            model_schema = model.model_json_schema(ref_template=_REF)
            for name, definition in model_schema.pop("$defs", {}).items():
                components.setdefault(name, definition)
            components.setdefault(model.__name__, model_schema)
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
