"""The Kubernetes pre-stop hook: a pod the StatefulSet scaled away leaves the
cluster before it stops; any other stopping pod stays a member.

A pod being stopped cannot tell why from inside, so it asks the API server
how many replicas the StatefulSet wants now. Its ordinal at or beyond that
number means a scale-down (StatefulSets remove the highest ordinals): the
node asks the leader to remove it and waits until that commits. Any other
stop (a rolling update, a drain, a crash loop) keeps it a member: SIGTERM
hands leadership over, and the pod comes back with its volume.

The pods named in SHOAL_PEERS bootstrapped the cluster and start without
``--join``; they never leave on their own (nor does anyone when the set is
scaled to zero: that stops the database, it does not shrink it).

When the answer cannot be had (no RBAC, the API unreachable), nothing is
removed; the member stays and `shoal cluster remove` takes it out by hand.
Run as ``python -m node.k8s_prestop``; it needs SHOAL_NODE_ID (the pod
name), SHOAL_PEERS or SHOAL_URL, and SHOAL_CLUSTER_SECRET.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import ssl
import sys
import time
from pathlib import Path

import httpx

from node.cli_cluster import ClusterCommandFailed, change_members, node_views, transfer_leader

ACCOUNT_DIR = Path(
    os.environ.get("SHOAL_K8S_ACCOUNT_DIR", "/var/run/secrets/kubernetes.io/serviceaccount")
)
# Inside the pod's termination grace period (deploy/k8s/shoal.yaml): the API
# read, the removal, then SIGTERM's handover and drain. Each request has
# REQUEST_SECONDS; an attempt makes several, so the whole hook is also cut
# at HOOK_SECONDS.
API_SECONDS = 5.0
LEAVE_SECONDS = 20.0
REQUEST_SECONDS = 5.0
HOOK_SECONDS = API_SECONDS + LEAVE_SECONDS + REQUEST_SECONDS
RETRY_SECONDS = 2.0
# Another change in progress, no leader yet, a leader that just stepped down.
RETRIED_STATUSES = frozenset({307, 409, 503})


class NoAnswer(Exception):
    """The desired replica count could not be read."""


def desired_replicas(statefulset: str, account: Path = ACCOUNT_DIR) -> int:
    """``spec.replicas`` of the StatefulSet, read with the pod's service account."""
    host = os.environ.get("KUBERNETES_SERVICE_HOST")
    port = os.environ.get("KUBERNETES_SERVICE_PORT", "443")
    if not host:
        raise NoAnswer("KUBERNETES_SERVICE_HOST is not set (not running in a pod?)")
    try:
        token = (account / "token").read_text().strip()
        namespace = (account / "namespace").read_text().strip()
    except OSError as exc:
        raise NoAnswer(f"the service account is not mounted: {exc}") from None
    if ":" in host:
        host = f"[{host}]"
    url = f"https://{host}:{port}/apis/apps/v1/namespaces/{namespace}/statefulsets/{statefulset}"
    try:
        response = httpx.get(url, headers={"Authorization": f"Bearer {token}"},
                             verify=_trusting(account / "ca.crt"),
                             timeout=API_SECONDS)  # fmt: skip
    except httpx.HTTPError as exc:
        raise NoAnswer(f"the API server did not answer: {exc!r}") from None
    if response.status_code != 200:
        raise NoAnswer(f"the API server answered {response.status_code} for {url} "
                       "(does the pod's service account may get statefulsets?)")  # fmt: skip
    try:
        replicas = response.json()["spec"]["replicas"]
    except (ValueError, KeyError, TypeError):
        raise NoAnswer("the API server's answer has no spec.replicas") from None
    if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0:
        raise NoAnswer(f"spec.replicas is not a count: {replicas!r}")
    return replicas


def _trusting(ca: Path) -> ssl.SSLContext:
    try:
        return ssl.create_default_context(cafile=str(ca))
    except (OSError, ssl.SSLError) as exc:
        raise NoAnswer(f"the cluster's CA ({ca}) cannot be read: {exc}") from None


def pod_ordinal(node_id: str) -> tuple[str, int]:
    """(StatefulSet name, ordinal) of a pod named ``<set>-<ordinal>``."""
    matched = re.fullmatch(r"(.+)-([0-9]+)", node_id)
    if matched is None:
        raise ValueError(f"{node_id!r} is not a StatefulSet pod name (<name>-<ordinal>)")
    return matched.group(1), int(matched.group(2))


def leave(node_id: str, urls: list[str], secret: str, deadline: float) -> str:
    """Ask the leader to remove ``node_id``, again while another change is in
    progress or no leader is known, until ``deadline``. A removal the
    cluster refuses for good (the last voter) is not asked again. A leader
    hands over first, so the others need not wait out an election."""
    args = argparse.Namespace(action="remove", node_id=node_id)
    last = "no attempt made"
    handed = ""
    while time.monotonic() < deadline:
        # Each request is bounded on its own: a node that accepts and never
        # answers must not eat the pod's grace period.
        budget = min(REQUEST_SECONDS, max(0.5, deadline - time.monotonic()))
        with httpx.Client(timeout=budget, headers=_api_key_header()) as http:
            try:
                handed = handed or _hand_over(http, urls, node_id, secret)
                changed = change_members(http, urls, args, secret)
                return f"committed at entry {changed.get('index')}{handed}"
            except ClusterCommandFailed as exc:
                if exc.status is not None and exc.status not in RETRIED_STATUSES:
                    raise
                last = str(exc)
            except httpx.HTTPError as exc:
                last = repr(exc)
        time.sleep(min(RETRY_SECONDS, max(0.0, deadline - time.monotonic())))
    raise ClusterCommandFailed(f"not removed within {LEAVE_SECONDS:.0f} s: {last}")


def _api_key_header() -> dict[str, str]:
    key = os.environ.get("SHOAL_API_KEY")
    return {"X-API-Key": key} if key else {}


def _hand_over(http: httpx.Client, urls: list[str], node_id: str, secret: str) -> str:
    """When ``node_id`` leads: hand leadership to the voter closest to it
    (a failure is not fatal: the removal makes it step down anyway)."""
    views = node_views(http, urls)
    leading = [v for v in views if v.get("role") == "leader" and v.get("node_id") == node_id]
    if not leading:
        return ""
    view = leading[0]
    lags = {m["id"]: m["lag"] for m in (view.get("progress") or {}).get("members", [])}
    others = [m["id"] for m in view.get("members", []) if m["voter"] and m["id"] != node_id]
    if not others:
        return ""
    target = min(others, key=lambda member: (lags.get(member) is None, lags.get(member) or 0))
    try:
        transfer_leader(http, urls, target, secret)
    except (ClusterCommandFailed, httpx.HTTPError) as exc:
        print(f"shoal pre-stop: could not hand leadership to {target}: {exc}",  # noqa: T201
              file=sys.stderr)  # fmt: skip
        return ""
    return f"; it handed leadership to {target} first"


def bootstrap_pods() -> dict[str, str]:
    """id -> URL of the members SHOAL_PEERS names."""
    peers = os.environ.get("SHOAL_PEERS", "")
    pairs = (item.strip().split("=", 1) for item in peers.split(",") if "=" in item)
    return {name: url for name, url in pairs}


def node_urls() -> list[str]:
    listed = list(bootstrap_pods().values())
    if not listed:
        listed = os.environ.get("SHOAL_URL", "http://127.0.0.1:7700").split(",")
    return [url.strip().rstrip("/") for url in listed if url.strip()]


class OutOfTime(Exception):
    pass


def _out_of_time(signum: int, frame: object) -> None:
    raise OutOfTime


def main(account: Path = ACCOUNT_DIR) -> int:
    signal.signal(signal.SIGALRM, _out_of_time)
    signal.setitimer(signal.ITIMER_REAL, HOOK_SECONDS)
    try:
        return _pre_stop(account)
    except OutOfTime:
        node_id = os.environ.get("SHOAL_NODE_ID", "")
        print(f"shoal pre-stop: {node_id} gave up after {HOOK_SECONDS:.0f} s; see "  # noqa: T201
              f"`shoal cluster status` (`shoal cluster remove {node_id}` takes it out)",
              file=sys.stderr)  # fmt: skip
        return 1
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)


def _pre_stop(account: Path) -> int:
    node_id = os.environ.get("SHOAL_NODE_ID", "")
    try:
        statefulset, ordinal = pod_ordinal(node_id)
    except ValueError as exc:
        print(f"shoal pre-stop: {exc}; staying a member", file=sys.stderr)  # noqa: T201
        return 0
    try:
        replicas = desired_replicas(statefulset, account)
    except NoAnswer as exc:
        print(f"shoal pre-stop: {exc}; {node_id} stays a member "  # noqa: T201
              f"(`shoal cluster remove {node_id}` takes it out)", file=sys.stderr)  # fmt: skip
        return 0
    if ordinal < replicas or replicas == 0 or node_id in bootstrap_pods():
        print(f"shoal pre-stop: {statefulset} wants {replicas} replicas; "  # noqa: T201
              f"{node_id} stays a member")  # fmt: skip
        return 0
    secret = os.environ.get("SHOAL_CLUSTER_SECRET", "")
    try:
        outcome = leave(node_id, node_urls(), secret, time.monotonic() + LEAVE_SECONDS)
    except ClusterCommandFailed as exc:
        print(f"shoal pre-stop: {node_id}: {exc}", file=sys.stderr)  # noqa: T201
        return 1
    print(f"shoal pre-stop: {statefulset} scaled to {replicas}; "  # noqa: T201
          f"{node_id} left the cluster ({outcome})")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
