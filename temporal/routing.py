"""Which node answers a retrieval: a healthy, caught-up follower.

The leader's ``/cluster`` view says which followers it heard from lately
and how far behind each one's log is. Followers are tried in rendezvous-hash
order of (route key, node), so different questions spread over the
followers while one question always prefers the same one; the leader is the
last resort.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import httpx


@dataclass(frozen=True)
class Target:
    node_id: str
    url: str


def healthy_followers(leader_view: dict[str, Any], max_lag: int) -> list[Target]:
    followers = []
    for peer in leader_view.get("peers", []):
        lag = peer.get("lag")
        if peer.get("reachable") and lag is not None and lag <= max_lag:
            followers.append(Target(peer["id"], peer["url"]))
    return followers


def route_order(targets: list[Target], key: str) -> list[Target]:
    def weight(target: Target) -> bytes:
        return hashlib.blake2b(f"{key}\0{target.node_id}".encode(), digest_size=8).digest()

    return sorted(targets, key=weight)


async def leader_view(client: httpx.AsyncClient, seeds: list[str]) -> dict[str, Any]:
    """The cluster as its leader sees it, asking the seed nodes in turn."""
    problems = []
    for seed in seeds:
        try:
            view: dict[str, Any] = (await client.get(f"{seed}/cluster")).json()
            if view.get("role") != "leader" and view.get("leader_url"):
                view = (await client.get(f"{view['leader_url']}/cluster")).json()
            if view.get("role") == "leader":
                return view
            problems.append(f"{seed}: no leader known")
        except (httpx.HTTPError, ValueError) as exc:
            problems.append(f"{seed}: {exc!r}")
    raise LookupError("no node could say who leads: " + "; ".join(problems))
