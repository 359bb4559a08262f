"""Idempotency-Key: a retried write is applied once.

The key rides inside the logged command; the state machine remembers the
outcomes of recent keyed writes (deterministically, so every replica
remembers the same ones: see :mod:`node.store.remembered`), and a command
whose key it has seen returns the first outcome instead of applying again.
The service also checks before proposing, so most retries never reach the
log.

The bounds below are part of the replicated state machine: every node must
use the same values, so they are constants, not settings.
"""

from __future__ import annotations

import hashlib
from contextvars import ContextVar

# At most this many keyed writes are remembered ...
REMEMBERED = 100_000
# ... and at most this many bytes of them, counted as encoded (see
# node.store.remembered).
REMEMBERED_BYTES = 64 << 20
# An answer larger than this, encoded, is not kept: the key is remembered as
# applied, and a retry is told so instead of receiving a copy.
OUTCOME_BYTES_KEPT = 8 << 20
MAX_KEY = 200

request_key: ContextVar[str | None] = ContextVar("request_key", default=None)
# What the keyed request was: a retry sends the same method, path, query and
# body bytes (the SDK encodes a body once for all its attempts); another
# request under a key already used is refused instead of answered with the
# first one's outcome.
request_fingerprint: ContextVar[str | None] = ContextVar("request_fingerprint", default=None)


def fingerprint(method: str, path: str, query: bytes, body: bytes) -> str:
    hasher = hashlib.sha256(f"{method}\n{path}\n".encode())
    hasher.update(query + b"\n")
    hasher.update(body)
    return hasher.hexdigest()[:32]


def valid_key(key: str) -> bool:
    return 0 < len(key) <= MAX_KEY and key.isprintable()
