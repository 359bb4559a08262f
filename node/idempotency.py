"""Idempotency-Key: a retried write is applied once.

The key rides inside the logged command; the state machine remembers the
outcome of the last :data:`REMEMBERED` keyed writes (deterministically, so
every replica remembers the same ones), and a command whose key it has seen
returns the first outcome instead of applying again. The service also checks
before proposing, so most retries never reach the log.
"""

from __future__ import annotations

from contextvars import ContextVar

REMEMBERED = 100_000
MAX_KEY = 200

request_key: ContextVar[str | None] = ContextVar("request_key", default=None)


def valid_key(key: str) -> bool:
    return 0 < len(key) <= MAX_KEY and key.isprintable()
