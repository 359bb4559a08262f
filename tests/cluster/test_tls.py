"""Three nodes over HTTPS with mutual TLS between them (a CA and certificates
made here with openssl): the SDK writes and reads over https, and a peer
without a certificate from the cluster's CA is refused."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import ssl
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import msgpack
import pytest

from tests.cluster_harness import SECRET_HEADER, ClusterProcesses
from tests.harness import NodeProcess

pytestmark = pytest.mark.cluster


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def _authority(directory: Path, name: str) -> None:
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
             "-keyout", f"{name}.key", "-out", f"{name}.pem", "-subj", f"/CN={name}",
             cwd=directory)  # fmt: skip


def _certificate(directory: Path, name: str, authority: str, names: str = "IP:127.0.0.1") -> None:
    (directory / f"{name}.ext").write_text(f"subjectAltName={names}\n")
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key",
             "-out", f"{name}.csr", "-subj", f"/CN={name}", cwd=directory)  # fmt: skip
    _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{authority}.pem",
             "-CAkey", f"{authority}.key", "-CAcreateserial", "-days", "2",
             "-out", f"{name}.pem", "-extfile", f"{name}.ext", cwd=directory)  # fmt: skip


@pytest.fixture
def pki(tmp_path: Path) -> Path:
    directory = tmp_path / "pki"
    directory.mkdir()
    _authority(directory, "cluster-ca")
    _certificate(directory, "node", "cluster-ca")
    for node_id in ("n1", "n2", "n3"):  # naming one node only, not its (shared) address
        _certificate(directory, node_id, "cluster-ca", names=f"DNS:{node_id}")
    _authority(directory, "other-ca")
    _certificate(directory, "stranger", "other-ca")
    return directory


def _raft_post(url: str, pki: Path, cert: str | None) -> httpx.Response:
    context = ssl.create_default_context(cafile=str(pki / "cluster-ca.pem"))
    if cert is not None:
        context.load_cert_chain(str(pki / f"{cert}.pem"), str(pki / f"{cert}.key"))
    return httpx.post(url + "/_cluster/raft", content=b"\x80", headers=SECRET_HEADER,
                      verify=context, timeout=10)  # fmt: skip


def test_a_cluster_over_mutual_tls(
    pki: Path, make_cluster: Callable[..., ClusterProcesses]
) -> None:
    from shoal_client import Client

    ca = str(pki / "cluster-ca.pem")
    cluster = make_cluster(
        3, "--tls-cert", str(pki / "node.pem"), "--tls-key", str(pki / "node.key"),
        "--peer-ca", ca, "--segment-bytes", "4096", "--snapshot-every", "20",
        scheme="https", verify=ssl.create_default_context(cafile=ca),
    )  # fmt: skip
    leader = cluster.leader()
    view = cluster.status(leader)
    assert view is not None and view["url"].startswith("https://")
    assert all(peer["url"].startswith("https://") for peer in view["peers"])
    urls = [node.url for node in cluster.nodes.values()]
    with Client(urls, verify=ca) as client:
        library = client.create_library("secure", dimension=2)
        client.add_document(library.id, chunks=[{"text": "over tls", "embedding": [1, 0]}])
        hits = client.query(library.id, query_embedding=[1, 0], k=1)
        assert [hit.text for hit in hits.results] == ["over tls"]
    cluster.converged()  # replicated over mutual TLS
    _a_learner_joins_and_installs_a_snapshot_over_tls(cluster, pki, leader)
    url = cluster.nodes[leader].url
    # a caller with the secret but no peer certificate is refused before the secret counts
    refused = _raft_post(url, pki, None)
    assert refused.status_code == 403
    assert "peer certificate signed by this cluster's --peer-ca" in refused.json()["detail"]
    # nor do the membership levers take the secret alone: no one gets to remove
    # members, or add one at a plaintext URL, without a certificate
    plain = ssl.create_default_context(cafile=ca)
    removal = httpx.delete(url + "/admin/members/n3", headers=SECRET_HEADER, verify=plain,
                           timeout=10)  # fmt: skip
    assert removal.status_code == 403, removal.text
    assert "(or an admin API key)" in removal.json()["detail"]
    peer = ssl.create_default_context(cafile=ca)
    peer.load_cert_chain(str(pki / "node.pem"), str(pki / "node.key"))
    cleartext = httpx.post(url + "/admin/members", headers=SECRET_HEADER, verify=peer,
                           json={"id": "n4", "url": "http://127.0.0.1:1"}, timeout=10)  # fmt: skip
    assert cleartext.status_code == 422 and "https:// URL" in cleartext.json()["detail"]
    assert {m["id"] for m in cluster.status(leader)["members"]} == set(cluster.nodes)  # type: ignore[index]
    # one with our CA's certificate reaches the Raft endpoint (garbage in: 400)
    assert _raft_post(url, pki, "node").status_code == 400
    _a_certificate_speaks_only_for_the_member_it_names(cluster, pki, leader)
    # a certificate from another CA does not get past the handshake (in TLS
    # 1.3 the client learns so only when the server hangs up)
    with pytest.raises((httpx.ConnectError, httpx.RemoteProtocolError)):
        _raft_post(url, pki, "stranger")
    # a plaintext peer gets no HTTP answer at all
    with socket.create_connection(("127.0.0.1", cluster.nodes[leader].port), timeout=10) as raw:
        raw.sendall(b"POST /_cluster/raft HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
        assert not raw.recv(100).startswith(b"HTTP/")
    # the SDK refuses a server its CA did not sign
    with Client(urls, verify=str(pki / "other-ca.pem"), max_attempts=2) as stranger, \
            pytest.raises(Exception, match="(?i)certificate|no node answered"):  # fmt: skip
        stranger.list_libraries().__next__()


def _a_certificate_speaks_only_for_the_member_it_names(
    cluster: ClusterProcesses, pki: Path, leader: str
) -> None:
    """A certificate our CA signed for one node (its id as the only name)
    cannot carry a message from another member: 403. For its own node the
    message is answered."""
    holder, other = [node_id for node_id in ("n1", "n2", "n3") if node_id != leader]
    context = ssl.create_default_context(cafile=str(pki / "cluster-ca.pem"))
    context.load_cert_chain(str(pki / f"{holder}.pem"), str(pki / f"{holder}.key"))
    status = cluster.status(leader)
    assert status is not None

    def pre_vote(sender: str) -> httpx.Response:
        vote = {"kind": "vote", "term": status["term"] + 1, "sender": sender,
                "last_index": 0, "last_term": 0, "pre_vote": True, "rpc": 1}  # fmt: skip
        headers = {**SECRET_HEADER, "X-Shoal-From": sender,
                   "X-Shoal-Cluster": status["cluster_id"]}  # fmt: skip
        return httpx.post(cluster.nodes[leader].url + "/_cluster/raft", headers=headers,
                          content=msgpack.packb(vote), verify=context, timeout=10)  # fmt: skip

    refused = pre_vote(other)
    assert refused.status_code == 403, refused.text
    assert refused.json()["type"].endswith("certificate-of-another-node")
    assert holder in refused.json()["detail"] and other in refused.json()["detail"]
    answered = pre_vote(holder)
    assert answered.status_code == 200, answered.text
    assert msgpack.unpackb(answered.content)["kind"] == "vote_resp"


def _a_learner_joins_and_installs_a_snapshot_over_tls(
    cluster: ClusterProcesses, pki: Path, leader: str
) -> None:
    """--join, then the snapshot transfer: both cross mutual TLS (the log it
    needs was compacted away, so only a snapshot can bring it up to date)."""
    from tests.cluster_harness import SECRET
    from tests.harness import free_port

    with cluster.client(leader) as api:
        for n in range(2):  # the second compacts the log behind the first
            for m in range(30):  # a few 4 KiB segments' worth
                made = api.post("/libraries", json={"name": f"before-snapshot-{n}-{m}"})
                made.raise_for_status()
            api.post("/admin/snapshot").raise_for_status()
    view = cluster.status(leader)
    assert view is not None
    assert view["wal"]["first_index"] > 1, view["wal"]
    tls = ["--tls-cert", str(pki / "node.pem"), "--tls-key", str(pki / "node.key"),
           "--peer-ca", str(pki / "cluster-ca.pem")]  # fmt: skip
    urls = ",".join(node.url for node in cluster.nodes.values())
    learner = NodeProcess(cluster.root / "n4", "--join", urls, *tls, node_id="n4",
                          env={"SHOAL_CLUSTER_SECRET": SECRET})  # fmt: skip
    learner.port, learner.scheme, learner.verify = free_port(), "https", cluster.verify
    cluster.nodes["n4"] = learner
    learner.start(wait=True)
    cluster.converged()
    joined = cluster.status("n4")
    assert joined is not None and joined["role"] == "learner"
    assert joined["snapshot"] is not None and joined["snapshot"]["index"] > 1, joined


def _served_name(port: int, pki: Path) -> str:
    """The common name of the certificate a new connection to the port gets."""
    context = ssl.create_default_context(cafile=str(pki / "cluster-ca.pem"))
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw, \
            context.wrap_socket(raw, server_hostname="127.0.0.1") as wrapped:  # fmt: skip
        subject = dict(item for rdn in wrapped.getpeercert()["subject"] for item in rdn)
    return str(subject["commonName"])


def test_a_renewed_certificate_is_served_after_sighup(tmp_path: Path, pki: Path) -> None:
    """kill -HUP reads --tls-cert and --tls-key again: new connections get
    the renewed certificate, without a restart; files that do not work leave
    the one in force, and the node serves on."""
    _certificate(pki, "renewed", "cluster-ca")
    live_cert, live_key = tmp_path / "live.pem", tmp_path / "live.key"
    shutil.copy(pki / "node.pem", live_cert)
    shutil.copy(pki / "node.key", live_key)
    node = NodeProcess(tmp_path / "data", "--tls-cert", str(live_cert), "--tls-key",
                       str(live_key))  # fmt: skip
    node.scheme = "https"
    node.verify = ssl.create_default_context(cafile=str(pki / "cluster-ca.pem"))
    node.start()
    try:
        assert _served_name(node.port, pki) == "node"
        shutil.copy(pki / "renewed.pem", live_cert)
        shutil.copy(pki / "renewed.key", live_key)
        os.kill(node.pid, signal.SIGHUP)
        deadline = time.monotonic() + 10
        while _served_name(node.port, pki) != "renewed":
            assert time.monotonic() < deadline, "the renewed certificate was not served"
            time.sleep(0.1)
        live_key.write_text("not a key\n")  # a renewal gone wrong
        os.kill(node.pid, signal.SIGHUP)
        time.sleep(0.5)
        assert _served_name(node.port, pki) == "renewed"
        assert "certificates not reloaded" in node.log()
        with node.client() as client:
            assert client.get("/health").status_code == 200
    finally:
        node.kill()
