"""The cluster as one node sees it: roles, terms, indexes, peers and their lag."""

from __future__ import annotations

import time
from typing import Any

from replication.runner import RaftNode


def peer_views(
    raft: RaftNode, peer_urls: dict[str, str], stale_after: float
) -> list[dict[str, Any]]:
    """Per peer: URL, whether we heard from it lately, and (on the leader) how
    far its log matches ours."""
    now = time.monotonic()
    core = raft.core
    views = []
    for node_id, url in sorted(peer_urls.items()):
        if node_id == raft.node_id:
            continue
        heard = raft.last_contact.get(node_id)
        progress = core.progress.get(node_id) if core is not None else None
        last_index = core.log.last_index() if core is not None else 0
        views.append({
            "id": node_id,
            "url": url,
            "reachable": heard is not None and now - heard < stale_after,
            "last_contact_seconds": None if heard is None else round(now - heard, 3),
            "match_index": progress.match_index if progress else None,
            "lag": (last_index - progress.match_index) if progress else None,
        })  # fmt: skip
    return views
