"""Which role each request needs (see node.keys and docs/security.md).

- open, no key: ``/health``, ``/ready``, ``/metrics``; ``/_cluster/*`` (peers
  prove themselves with the cluster secret instead);
- read: every GET and HEAD, queries, questions (``/ask``);
- write: every other change to libraries, documents and chunks;
- admin: deleting a library, and everything under ``/admin``.
"""

from __future__ import annotations

import re

from node.keys import Role

OPEN_PATHS = frozenset({"/health", "/ready", "/metrics"})
_READS_BY_POST = re.compile(r"/libraries/[^/]+/(query|ask)")
_LIBRARY = re.compile(r"/libraries/[^/]+")


def needed_role(method: str, path: str) -> Role | None:
    """The least role that may make this request; None: no key needed."""
    if path in OPEN_PATHS or path.startswith("/_cluster/"):
        return None
    if path.startswith("/admin/") or path == "/admin":
        return Role.ADMIN
    if method in ("GET", "HEAD", "OPTIONS"):
        return Role.READ
    if method == "POST" and _READS_BY_POST.fullmatch(path):
        return Role.READ
    if method == "DELETE" and _LIBRARY.fullmatch(path):
        return Role.ADMIN
    return Role.WRITE
