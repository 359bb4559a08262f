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


def leader_progress(raft: RaftNode, stale_after: float) -> dict[str, Any] | None:
    """Every member's progress as the leader of this term sees it: computed
    on the leader, and on a follower the summary the leader's appends carry.
    None when no leader of this term has sent one, or its newest is older
    than ``stale_after`` seconds (the leader may be gone)."""
    made = raft.leader_view()
    age = 0.0
    if made is not None:
        term, view = made
        leader: str | None = raft.node_id
    else:
        heard = raft.heard_view
        if heard is None:
            return None
        leader, term, received, view = heard
        age = time.monotonic() - received
        if leader != raft.leader_id or term != raft.term or age > stale_after:
            return None
    return {
        "leader_id": leader,
        "term": term,
        "age_seconds": round(age, 3),
        "leader_last_index": view.last_index,
        "members": [
            {
                "id": member.id,
                "match_index": member.match_index,
                "lag": None
                if member.match_index is None
                else max(0, view.last_index - member.match_index),
                "last_contact_seconds": None  # as of now, not as of the summary
                if member.heard_ms is None
                else round(member.heard_ms / 1000 + age, 3),
            }
            for member in view.members
        ],
    }
