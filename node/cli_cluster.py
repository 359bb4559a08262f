"""``shoal cluster status`` and ``shoal cluster transfer-leader``: operator
levers over the cluster's own endpoints, with the cluster secret."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any, TextIO

import httpx

SECRET_HEADER = "X-Shoal-Cluster-Secret"


class ClusterCommandFailed(Exception):
    pass


def add_actions(actions: Any) -> None:
    default_url = os.environ.get("SHOAL_URL", "http://127.0.0.1:7700")
    for name, text in (
        ("status", "the cluster's id, members and who leads"),
        ("transfer-leader", "hand leadership to a node, without waiting out an election"),
    ):
        action = actions.add_parser(name, help=text)
        if name == "transfer-leader":
            action.add_argument("node_id", metavar="ID", help="the node to lead next")
        action.add_argument("--url", default=default_url, help="node URLs, comma separated")
        action.add_argument("--cluster-secret",
                            help="the cluster's secret [SHOAL_CLUSTER_SECRET]")  # fmt: skip


def run(args: argparse.Namespace) -> int:
    urls = [url.strip().rstrip("/") for url in args.url.split(",") if url.strip()]
    secret = args.cluster_secret or os.environ.get("SHOAL_CLUSTER_SECRET") or None
    api_key = os.environ.get("SHOAL_API_KEY")
    headers = {"X-API-Key": api_key} if api_key else {}
    try:
        with httpx.Client(timeout=30.0, headers=headers) as http:
            if args.action == "transfer-leader":
                if secret is None:
                    raise ClusterCommandFailed(
                        "transfer-leader needs the cluster secret (--cluster-secret or "
                        "SHOAL_CLUSTER_SECRET)"
                    )
                moved = transfer_leader(http, urls, args.node_id, secret)
                print(f"{moved['previous_leader_id']} handed leadership to "  # noqa: T201
                      f"{moved['leader_id']} in {moved['seconds']:.2f} s "
                      f"(term {moved['previous_term']} -> {moved['term']})")  # fmt: skip
            return show(http, urls, sys.stdout)
    except ClusterCommandFailed as exc:
        print(f"shoal: {exc}", file=sys.stderr)  # noqa: T201
        return 1


def _views(http: httpx.Client, urls: list[str]) -> list[dict[str, Any]]:
    views = []
    for url in urls:
        try:
            response = http.get(url + "/cluster")
        except httpx.HTTPError:
            continue
        if response.status_code == 200:
            views.append(response.json())
    return views


def _leader_url(http: httpx.Client, urls: list[str]) -> str:
    views = _views(http, urls)
    if not views:
        raise ClusterCommandFailed(f"no node answered at {', '.join(urls)}")
    for view in sorted(views, key=lambda v: -int(v["term"])):
        if view["leader_url"]:
            return str(view["leader_url"])
    raise ClusterCommandFailed("no leader is known right now (an election is under way)")


def transfer_leader(http: httpx.Client, urls: list[str], target: str, secret: str) -> Any:
    url = _leader_url(http, urls)
    response = http.post(url + "/admin/leadership", json={"target": target},
                         headers={SECRET_HEADER: secret}, follow_redirects=True)  # fmt: skip
    if response.status_code != 200:
        try:
            detail = response.json().get("detail", response.text)
        except ValueError:
            detail = response.text
        raise ClusterCommandFailed(f"{url} answered {response.status_code}: {detail}")
    return response.json()


def show(http: httpx.Client, urls: list[str], out: TextIO) -> int:
    """The configuration as the leader (or the newest view) sees it, with
    each member's role as it reports it."""
    views = _views(http, urls)
    if not views:
        print(f"no node answered at {', '.join(urls)}", file=out)  # noqa: T201
        return 1
    newest = max(views, key=lambda v: (v["role"] == "leader", int(v["term"])))
    roles = {view["node_id"]: view["role"] for view in views}
    members = newest.get("members") or []
    for member in members:
        if member["id"] not in roles:
            try:
                roles[member["id"]] = _views(http, [member["url"]])[0]["role"]
            except IndexError:
                roles[member["id"]] = "unreachable"
    print(f"cluster {newest.get('cluster_id')}  term {newest['term']}  "  # noqa: T201
          f"leader {newest['leader_id'] or '(none)'}", file=out)  # fmt: skip
    rows = [("MEMBER", "VOTER", "ROLE", "URL")]
    rows += [(m["id"], "yes" if m["voter"] else "no", roles.get(m["id"], "?"), m["url"])
             for m in members]  # fmt: skip
    widths = [max(len(row[column]) for row in rows) for column in range(4)]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)),  # noqa: T201
              file=out)  # fmt: skip
    return 0
