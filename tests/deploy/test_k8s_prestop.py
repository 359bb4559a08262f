"""The StatefulSet's pre-stop hook against a real cluster named like pods,
and a stand-in Kubernetes API served over TLS with a certificate made here."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from node import k8s_prestop
from tests.cluster_harness import SECRET, SECRET_HEADER, ClusterProcesses

REPO = Path(__file__).resolve().parents[2]
TOKEN = "pod-token"
NAMESPACE = "shoal-test"


@dataclass
class FakeApi:
    port: int
    account: Path
    replicas: int | None = 3  # None: the StatefulSet's answer has no count
    seen: list[str] | None = None


@pytest.fixture
def kube_api(tmp_path: Path) -> Iterator[FakeApi]:
    account = tmp_path / "serviceaccount"
    account.mkdir()
    key, cert = account / "tls.key", account / "ca.crt"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    (account / "token").write_text(TOKEN + "\n")
    (account / "namespace").write_text(NAMESPACE)
    api = FakeApi(0, account, seen=[])

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the http.server name
            assert api.seen is not None
            api.seen.append(self.path)
            wanted = f"/apis/apps/v1/namespaces/{NAMESPACE}/statefulsets/shoal"
            if self.headers.get("Authorization") != f"Bearer {TOKEN}" or self.path != wanted:
                self.send_response(403)
                self.end_headers()
                return
            spec = {} if api.replicas is None else {"replicas": api.replicas}
            body = json.dumps({"kind": "StatefulSet", "spec": spec}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    api.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield api
    server.shutdown()
    server.server_close()
    thread.join(5)


def _pre_stop(api: FakeApi, pod: str, **env: str) -> subprocess.CompletedProcess[str]:
    given = {
        "PATH": os.environ["PATH"],
        "SHOAL_NODE_ID": pod,
        "KUBERNETES_SERVICE_HOST": "127.0.0.1",
        "KUBERNETES_SERVICE_PORT": str(api.port),
        "SHOAL_K8S_ACCOUNT_DIR": str(api.account),
        "SHOAL_CLUSTER_SECRET": SECRET,
        **env,
    }
    return subprocess.run([sys.executable, "-m", "node.k8s_prestop"], env=given, cwd=REPO,
                          capture_output=True, text=True, timeout=60)  # fmt: skip


@contextlib.contextmanager
def _silent_listener() -> Iterator[str]:
    """A URL whose connections are taken (by the kernel) and never answered."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        listener.close()


def test_the_hook_is_cut_off_before_the_grace_period_ends(
    kube_api: FakeApi, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """However the requests go, the hook ends in time for SIGTERM's handover."""
    kube_api.replicas = 3
    monkeypatch.setattr(k8s_prestop, "HOOK_SECONDS", 1.0)
    with _silent_listener() as silent:
        for name, value in {"SHOAL_NODE_ID": "shoal-4", "SHOAL_URL": silent,
                            "KUBERNETES_SERVICE_HOST": "127.0.0.1",
                            "KUBERNETES_SERVICE_PORT": str(kube_api.port)}.items():  # fmt: skip
            monkeypatch.setenv(name, value)
        monkeypatch.delenv("SHOAL_PEERS", raising=False)
        started = time.monotonic()
        assert k8s_prestop.main(kube_api.account) == 1
    assert time.monotonic() - started < 3.0
    assert "shoal-4 gave up after 1 s" in capsys.readouterr().err


def _members(cluster: ClusterProcesses, node: str) -> dict[str, bool]:
    view = cluster.status(node)
    assert view is not None
    return {member["id"]: member["voter"] for member in view["members"]}


@pytest.mark.cluster
def test_a_pod_scaled_away_leaves_and_any_other_stop_stays(
    kube_api: FakeApi, make_cluster: Callable[..., ClusterProcesses]
) -> None:
    cluster = make_cluster(3, names=["shoal-0", "shoal-1", "shoal-2"])
    urls = ",".join(node.url for node in cluster.nodes.values())
    everyone = {"shoal-0": True, "shoal-1": True, "shoal-2": True}
    # a rolling restart or a drain: the set still wants this pod
    kept = _pre_stop(kube_api, "shoal-2", SHOAL_URL=urls)
    assert kept.returncode == 0, kept.stderr
    assert "wants 3 replicas; shoal-2 stays a member" in kept.stdout
    # scaled to zero: the database is being stopped, not shrunk
    kube_api.replicas = 0
    assert "stays a member" in _pre_stop(kube_api, "shoal-2", SHOAL_URL=urls).stdout
    # the API cannot be asked: nothing is removed, and the log says how to
    kube_api.replicas = None
    unknown = _pre_stop(kube_api, "shoal-2", SHOAL_URL=urls)
    assert unknown.returncode == 0 and "no spec.replicas" in unknown.stderr
    assert "`shoal cluster remove shoal-2`" in unknown.stderr
    kube_api.replicas = 2
    denied = _pre_stop(kube_api, "shoal-2", SHOAL_URL=urls,
                       SHOAL_K8S_ACCOUNT_DIR=str(kube_api.account.parent))  # fmt: skip
    assert denied.returncode == 0 and "service account is not mounted" in denied.stderr
    # a bootstrap pod (named in SHOAL_PEERS) never leaves on its own
    peers = ",".join(f"{name}={node.url}" for name, node in cluster.nodes.items())
    assert "stays a member" in _pre_stop(kube_api, "shoal-2", SHOAL_PEERS=peers).stdout
    assert _members(cluster, "shoal-0") == everyone
    # the set was scaled to 2: shoal-2 leaves before it stops; as the leader
    # it hands over first, so the others need not wait out an election
    leader = cluster.leader()
    if leader != "shoal-2":
        moved = httpx.post(cluster.nodes[leader].url + "/admin/leadership", timeout=30,
                           json={"target": "shoal-2"}, headers=SECRET_HEADER)  # fmt: skip
        assert moved.status_code == 200, moved.text
    assert cluster.leader() == "shoal-2"
    left = _pre_stop(kube_api, "shoal-2", SHOAL_URL=urls)
    assert left.returncode == 0, left.stderr
    assert "scaled to 2; shoal-2 left the cluster (committed at entry" in left.stdout
    assert "it handed leadership to shoal-" in left.stdout
    assert cluster.leader(exclude=("shoal-2",)) in ("shoal-0", "shoal-1")
    remaining = {"shoal-0": True, "shoal-1": True}
    for node in ("shoal-0", "shoal-1"):
        assert _members(cluster, node) == remaining
    # asked again (the kubelet runs the hook once more): already out, no error
    again = _pre_stop(kube_api, "shoal-2", SHOAL_URL=urls)
    assert again.returncode == 0 and "left the cluster" in again.stdout
    # scaled to 1: one more leaves, though a node it asks never answers (each
    # request has its own bound); the one left keeps the data
    kube_api.replicas = 1
    with _silent_listener() as silent:
        started = time.monotonic()
        gone = _pre_stop(kube_api, "shoal-1", SHOAL_URL=f"{silent},{urls}")
        took = time.monotonic() - started
    assert gone.returncode == 0 and "left the cluster" in gone.stdout, gone.stderr
    assert took < k8s_prestop.LEAVE_SECONDS, took
    assert _members(cluster, "shoal-0") == {"shoal-0": True}
    assert kube_api.seen and all(path.endswith("/statefulsets/shoal") for path in kube_api.seen)
