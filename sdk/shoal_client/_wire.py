"""Request and response bodies as bytes.

Embeddings dominate what the client sends: a document of 100 chunks of 384
floats is 700 kB of JSON, which the standard library encodes in about 21 ms
and orjson in about 1.3 ms (see docs/decisions/sdk-encoding.md). orjson also
takes numpy arrays as they are, so callers need not call ``tolist()``.
"""

from __future__ import annotations

import math
from typing import Any

import orjson

_OPTIONS = orjson.OPT_SERIALIZE_NUMPY


class EncodeError(ValueError):
    """A body the client cannot send as JSON."""


def encode(body: Any, *, canonical: bool = False) -> bytes:
    """``body`` as JSON bytes; ``canonical`` sorts object keys (for hashing)."""
    options = _OPTIONS | orjson.OPT_SORT_KEYS if canonical else _OPTIONS
    try:
        raw = orjson.dumps(body, option=options)
    except TypeError as exc:  # orjson.JSONEncodeError: a type it cannot encode
        raise EncodeError(f"the request body cannot be sent as JSON: {exc}") from None
    # orjson writes NaN and infinities as null, which would silently clear a
    # metadata field: look for them only when a null is there at all.
    if b"null" in raw and _has_non_finite(body):
        raise EncodeError("the request body holds NaN or an infinity, which JSON cannot carry")
    return raw


def _has_non_finite(value: Any) -> bool:
    if isinstance(value, float):
        return not math.isfinite(value)
    if hasattr(value, "dtype") and hasattr(value, "tolist"):  # a numpy array or scalar
        return _has_non_finite(value.tolist())
    if isinstance(value, dict):
        return any(_has_non_finite(item) for item in value.values())
    if isinstance(value, list | tuple):
        return any(_has_non_finite(item) for item in value)
    return False


def decode(raw: bytes) -> Any:
    return orjson.loads(raw)
