"""Which role each request needs (see node.keys and docs/security.md).

- open, no key: ``/health``, ``/ready``, ``/metrics``;
- the cluster secret instead of a key: ``/_cluster/*`` (peers), and the
  membership and leadership levers ``/admin/members*``, ``/admin/leadership``
  (a node joining with ``--join`` holds the secret, not a key);
- read: every GET and HEAD, queries, questions (``/ask``, and cancelling one);
- write: every other change to libraries, documents and chunks;
- admin: deleting a library, and the rest of ``/admin`` (snapshots, backups).
"""

from __future__ import annotations

import re

from node.keys import Role

OPEN_PATHS = frozenset({"/health", "/ready", "/metrics"})
_READS_BY_POST = re.compile(r"/libraries/[^/]+/(query|ask)|/queries/[^/]+/cancel")
_LIBRARY = re.compile(r"/libraries/[^/]+")
_SECRET_GUARDED = re.compile(r"/admin/members(/.*)?|/admin/leadership")


def is_cluster_lever(path: str) -> bool:
    """A membership or leadership route (guarded by the cluster secret)."""
    return _SECRET_GUARDED.fullmatch(path.rstrip("/")) is not None


def needed_role(method: str, path: str) -> Role | None:
    """The least role that may make this request; None: no key needed (the
    route itself asks for the cluster secret, or nothing)."""
    if path.rstrip("/") in OPEN_PATHS or path.startswith("/_cluster/"):
        return None
    if is_cluster_lever(path):
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
