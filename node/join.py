"""``--join``: a fresh node asks an existing cluster to add it as a learner."""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from urllib.parse import urljoin, urlsplit

import httpx

from replication.membership import Configuration, Member, MembershipRefused
from replication.transport import SECRET_HEADER

log = logging.getLogger("shoal.join")
JOIN_SECONDS = 120.0


def configuration_from_answer(answer: dict[str, object]) -> Configuration:
    members = answer["members"]
    assert isinstance(members, list)
    return Configuration(
        str(answer["cluster_id"]),
        tuple(Member(str(m["id"]), str(m["url"]), bool(m["voter"])) for m in members),
    )


async def join_cluster(
    urls: list[str], node_id: str, own_url: str, secret: str, tls: ssl.SSLContext | None = None
) -> tuple[Configuration, int]:
    """The member list with this node in it, once the change committed, and
    the log index it was committed at.

    Tries each URL in turn (a follower redirects to the leader) until one
    adds the node, for up to JOIN_SECONDS: the cluster may be electing.
    """
    if not urls:
        raise MembershipRefused("--join needs the URL of at least one node of the cluster")
    body = {"id": node_id, "url": own_url}
    deadline = time.monotonic() + JOIN_SECONDS
    last = "no node answered"
    async with httpx.AsyncClient(timeout=30.0, verify=tls or True,
                                 headers={SECRET_HEADER: secret}) as http:  # fmt: skip
        while time.monotonic() < deadline:
            for url in urls:
                try:
                    answer = await http.post(url.rstrip("/") + "/admin/members", json=body)
                    leader = _same_scheme(url, answer)
                    if leader is not None:  # a follower names the leader
                        answer = await http.post(leader, json=body)
                except httpx.HTTPError as exc:
                    last = f"{url}: {exc!r}"
                    continue
                if answer.status_code == 200:
                    found = answer.json()
                    return configuration_from_answer(found), int(found.get("index") or 0)
                detail = _detail(answer)
                transient = _kind(answer) == "membership-change-refused"  # another change first
                if answer.status_code in (403, 409, 422) and not transient:
                    raise MembershipRefused(f"{url} refused to add {node_id}: {detail}")
                last = f"{url} answered {answer.status_code}: {detail}"
            log.info("joining: %s; trying again", last)
            await asyncio.sleep(1.0)
    raise MembershipRefused(f"could not join within {JOIN_SECONDS:.0f} s: {last}")


def _same_scheme(url: str, answer: httpx.Response) -> str | None:
    """Where a 307 sends the join, if it keeps the scheme of ``url`` (the
    request carries the cluster secret: never from https to http)."""
    location = answer.headers.get("location")
    if answer.status_code != 307 or not location:
        return None
    target = urljoin(url.rstrip("/") + "/", location)
    return target if urlsplit(target).scheme == urlsplit(url).scheme else None


def _kind(answer: httpx.Response) -> str:
    try:
        return str(answer.json().get("type", "")).rsplit("/", 1)[-1]
    except ValueError:
        return ""


def _detail(answer: httpx.Response) -> str:
    try:
        return str(answer.json().get("detail", answer.text))
    except ValueError:
        return answer.text
