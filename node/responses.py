"""JSON answers written straight from the views' dicts.

A route that returns a dict has FastAPI validate it against its
``response_model`` and serialize it through pydantic (for a plain `def`
route, on another worker-thread hop): measured on this machine that was a
third of a /health request's CPU, and more for a query answer. The views
already build exactly the documented shape (``tests/api/test_response_shapes.py``
checks each against its model), so the hot routes return :class:`JSONBody`
and keep ``response_model`` for the OpenAPI document only.
"""

from __future__ import annotations

import json
from typing import Any

import orjson
from starlette.responses import Response

# Every write's answer names the log index that holds the write.
INDEX_HEADER = "X-Shoal-Index"


class JSONBody(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        # orjson would write NaN as null. Stored numbers are finite (checked
        # at write); the only computed ones, scores, are checked where made.
        try:
            return orjson.dumps(content)
        except TypeError:  # an integer beyond 64 bits: the standard library takes those
            return json.dumps(content, ensure_ascii=False, allow_nan=False,
                              separators=(",", ":")).encode()  # fmt: skip


def written(
    content: Any, index: int, status_code: int = 200, location: str | None = None
) -> JSONBody:
    """A write's answer: the new state, and the log index that holds the write."""
    headers = {INDEX_HEADER: str(index)}
    if location is not None:
        headers["Location"] = location
    return JSONBody(content, status_code=status_code, headers=headers)
