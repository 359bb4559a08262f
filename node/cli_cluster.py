"""``shoal cluster status`` and ``shoal cluster transfer-leader``: operator
levers over the cluster's own endpoints, with the cluster secret."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any, TextIO

import httpx

from node.cli_table import print_table

SECRET_HEADER = "X-Shoal-Cluster-Secret"


class ClusterCommandFailed(Exception):
    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status  # the HTTP status the node answered, if it answered


def add_actions(actions: Any) -> None:
    default_url = os.environ.get("SHOAL_URL", "http://127.0.0.1:7700")
    for name, text in (
        ("status", "the cluster's id, members and who leads"),
        ("transfer-leader", "hand leadership to a node, without waiting out an election"),
        ("add", "add a node as a learner (it receives the log; promote it once caught up)"),
        ("promote", "make a learner a voter once it has caught up"),
        ("remove", "remove a member (a leader steps down once that commits)"),
    ):
        action = actions.add_parser(name, help=text)
        if name != "status":
            action.add_argument("node_id", metavar="ID", help="the node")
        if name == "add":
            action.add_argument("node_url", metavar="URL", help="the node's URL, as peers reach it")
        action.add_argument("--url", default=default_url, help="node URLs, comma separated")
        action.add_argument("--cluster-secret",
                            help="the cluster's secret [SHOAL_CLUSTER_SECRET]")  # fmt: skip


def run(args: argparse.Namespace) -> int:
    urls = [url.strip().rstrip("/") for url in args.url.split(",") if url.strip()]
    secret = args.cluster_secret or os.environ.get("SHOAL_CLUSTER_SECRET") or None
    api_key = os.environ.get("SHOAL_API_KEY")
    headers = {"X-API-Key": api_key} if api_key else {}
    try:
        # Longer than the server waits for a change to commit (twice 30 s).
        with httpx.Client(timeout=75.0, headers=headers) as http:
            if args.action != "status" and secret is None:
                raise ClusterCommandFailed(
                    f"{args.action} needs the cluster secret (--cluster-secret or "
                    "SHOAL_CLUSTER_SECRET)"
                )
            if args.action in ("add", "promote", "remove"):
                changed = change_members(http, urls, args, secret or "")
                print(f"{args.action} {args.node_id}: committed at entry "  # noqa: T201
                      f"{changed.get('index')}")  # fmt: skip
            if args.action == "transfer-leader":
                moved = transfer_leader(http, urls, args.node_id, secret or "")
                print(f"{moved['previous_leader_id']} handed leadership to "  # noqa: T201
                      f"{moved['leader_id']} in {moved['seconds']:.2f} s "
                      f"(term {moved['previous_term']} -> {moved['term']})")  # fmt: skip
            return show(http, urls, sys.stdout)
    except ClusterCommandFailed as exc:
        print(f"shoal: {exc}", file=sys.stderr)  # noqa: T201
        return 1
    except httpx.HTTPError as exc:
        print(f"shoal: {args.action}: {exc!r} (the change may or may not have been made; "  # noqa: T201
              "run `shoal cluster status`)", file=sys.stderr)  # fmt: skip
        return 1


def node_views(http: httpx.Client, urls: list[str]) -> list[dict[str, Any]]:
    """What each node that answered says of the cluster (with ``reached_at``)."""
    views = []
    for url in urls:
        try:
            response = http.get(url + "/cluster")
        except httpx.HTTPError:
            continue
        if response.status_code == 200:
            views.append({**response.json(), "reached_at": url})
    return views


def _leader_url(http: httpx.Client, urls: list[str]) -> str:
    """The leader's URL: the one given for it when it is among them (nodes
    advertise the URLs their peers use, which may be names only they can
    resolve, inside a container network say), else the one it advertises,
    if a node reached through the given URLs lists it as a member (the
    commands send the cluster secret and the API key; as the SDK does, they
    send them nowhere else, and never from https down to http)."""
    views = node_views(http, urls)
    if not views:
        raise ClusterCommandFailed(f"no node answered at {', '.join(urls)}")
    reached = {view["node_id"]: view["reached_at"] for view in views}
    members = {str(m.get("url", "")).rstrip("/") for v in views for m in v.get("members") or []}
    https_only = any(url.lower().startswith("https://") for url in urls)
    for view in sorted(views, key=lambda v: -int(v["term"])):
        if not view["leader_url"]:
            continue
        if view["leader_id"] in reached:
            return str(reached[view["leader_id"]])
        advertised = str(view["leader_url"]).rstrip("/")
        if advertised in members and not (https_only and advertised.startswith("http://")):
            return advertised
        raise ClusterCommandFailed(
            f"the leader, {view['leader_id']}, is at {advertised}, which is neither among the "
            "URLs given nor a member the nodes list (or it would downgrade https to http); "
            "give its URL with --url if it is yours"
        )
    raise ClusterCommandFailed("no leader is known right now (an election is under way)")


def change_members(
    http: httpx.Client, urls: list[str], args: argparse.Namespace, secret: str
) -> Any:
    """Ask the leader for the change; it answers once the change committed."""
    url = _leader_url(http, urls)
    headers = {SECRET_HEADER: secret}
    if args.action == "add":
        response = http.post(url + "/admin/members", headers=headers, follow_redirects=False,
                             json={"id": args.node_id, "url": args.node_url})  # fmt: skip
    elif args.action == "promote":
        response = http.post(f"{url}/admin/members/{args.node_id}/promote", headers=headers,
                             follow_redirects=False)  # fmt: skip
    else:
        response = http.delete(f"{url}/admin/members/{args.node_id}", headers=headers,
                               follow_redirects=False)  # fmt: skip
    if response.status_code != 200:
        raise ClusterCommandFailed(
            f"{url} answered {response.status_code}: {_detail(response)}", response.status_code
        )
    return response.json()


def _detail(response: httpx.Response) -> str:
    if response.status_code == 307:  # not followed: see _leader_url
        return "leadership moved meanwhile; run the command again"
    try:
        return str(response.json().get("detail", response.text))
    except ValueError:
        return response.text


def transfer_leader(http: httpx.Client, urls: list[str], target: str, secret: str) -> Any:
    url = _leader_url(http, urls)
    response = http.post(url + "/admin/leadership", json={"target": target},
                         headers={SECRET_HEADER: secret}, follow_redirects=False)  # fmt: skip
    if response.status_code != 200:
        raise ClusterCommandFailed(
            f"{url} answered {response.status_code}: {_detail(response)}", response.status_code
        )
    return response.json()


def show(http: httpx.Client, urls: list[str], out: TextIO) -> int:
    """The configuration as the leader (or the newest view) sees it, with
    each member's role as it reports it."""
    views = node_views(http, urls)
    if not views:
        print(f"no node answered at {', '.join(urls)}", file=out)  # noqa: T201
        return 1
    newest = max(views, key=lambda v: (v["role"] == "leader", int(v["term"])))
    roles = {view["node_id"]: view["role"] for view in views}
    members = newest.get("members") or []
    for member in members:
        if member["id"] not in roles:
            try:
                roles[member["id"]] = node_views(http, [member["url"]])[0]["role"]
            except IndexError:
                roles[member["id"]] = "unreachable"
    print(f"cluster {newest.get('cluster_id')}  term {newest['term']}  "  # noqa: T201
          f"leader {newest['leader_id'] or '(none)'}", file=out)  # fmt: skip
    # the leader's view of this term, from whichever node carries it
    progress = newest.get("progress") or next(
        (v["progress"] for v in views if v.get("progress")
         and (v["progress"]["term"], v["progress"]["leader_id"])
         == (newest["term"], newest["leader_id"])), None,
    )  # fmt: skip
    lags = {m["id"]: "?" if m["lag"] is None else str(m["lag"])
            for m in progress["members"]} if progress else {}  # fmt: skip
    rows = [("MEMBER", "VOTER", "ROLE", "LAG", "URL")]
    rows += [(m["id"], "yes" if m["voter"] else "no", roles.get(m["id"], "?"),
              lags.get(m["id"], "?"), m["url"]) for m in members]  # fmt: skip
    print_table(rows, out)
    return 0
