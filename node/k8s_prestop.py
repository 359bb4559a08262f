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
import sys
import time
from pathlib import Path

import httpx

from node.cli_cluster import ClusterCommandFailed, change_members

ACCOUNT_DIR = Path(
    os.environ.get("SHOAL_K8S_ACCOUNT_DIR", "/var/run/secrets/kubernetes.io/serviceaccount")
)
# Inside the pod's termination grace period (40 s in deploy/k8s/shoal.yaml).
LEAVE_SECONDS = 30.0
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
                             verify=str(account / "ca.crt"), timeout=5.0)  # fmt: skip
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


def pod_ordinal(node_id: str) -> tuple[str, int]:
    """(StatefulSet name, ordinal) of a pod named ``<set>-<ordinal>``."""
    matched = re.fullmatch(r"(.+)-([0-9]+)", node_id)
    if matched is None:
        raise ValueError(f"{node_id!r} is not a StatefulSet pod name (<name>-<ordinal>)")
    return matched.group(1), int(matched.group(2))


def leave(node_id: str, urls: list[str], secret: str, deadline: float) -> str:
    """Ask the leader to remove ``node_id``, again while another change is in
    progress or no leader is known, until ``deadline``. A removal the
    cluster refuses for good (the last voter) is not asked again."""
    args = argparse.Namespace(action="remove", node_id=node_id)
    last = "no attempt made"
    with httpx.Client(timeout=max(1.0, deadline - time.monotonic())) as http:
        while time.monotonic() < deadline:
            try:
                changed = change_members(http, urls, args, secret)
                return f"committed at entry {changed.get('index')}"
            except ClusterCommandFailed as exc:
                if exc.status is not None and exc.status not in RETRIED_STATUSES:
                    raise
                last = str(exc)
            except httpx.HTTPError as exc:
                last = repr(exc)
            time.sleep(min(RETRY_SECONDS, max(0.0, deadline - time.monotonic())))
    raise ClusterCommandFailed(f"not removed within {LEAVE_SECONDS:.0f} s: {last}")


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


def main(account: Path = ACCOUNT_DIR) -> int:
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
