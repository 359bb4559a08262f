"""Keys with roles, from a keys file read again on SIGHUP, on a real node;
and a node that would serve beyond loopback with no key refuses to start."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from node.access import needed_role
from node.keys import KeyRing, KeysFileError, Role, parse_keys
from tests.harness import REPO, NodeProcess

READ, WRITE, ADMIN = "read-key-0123456789", "write-key-0123456789", "admin-key-0123456789"


def _problem(response: httpx.Response, status: int, *words: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    for word in words:
        assert word in response.json()["detail"], response.json()["detail"]


def _as(key: str) -> dict[str, str]:
    return {"X-API-Key": key}


def test_each_role_does_what_it_may_and_is_told_what_it_may_not(
    start_node: Callable[..., NodeProcess], tmp_path: Path
) -> None:
    keys = tmp_path / "keys.json"
    keys.write_text(json.dumps([
        {"key": READ, "role": "read"},
        # the file may hold the key's digest only
        {"sha256": hashlib.sha256(WRITE.encode()).hexdigest(), "role": "write"},
        {"key": ADMIN, "role": "admin", "name": "ops"},
    ]))  # fmt: skip
    node = start_node("--keys-file", str(keys))
    with node.client() as api:
        assert api.get("/health").status_code == 200  # open: probes and scrapers
        _problem(api.get("/libraries"), 401, "requires an API key")
        _problem(api.get("/libraries", headers=_as("nobody-0123456789")), 401, "not valid")
        _problem(api.post("/libraries", json={"name": "r"}, headers=_as(READ)), 403,
                 "has the read role; POST /libraries needs the write role")  # fmt: skip
        made = api.post("/libraries", json={"name": "roles", "dimension": 2},
                        headers=_as(WRITE))  # fmt: skip
        assert made.status_code == 201, made.text
        lib = made.json()["id"]
        doc = {"chunks": [{"text": "a", "embedding": [1, 0]}]}
        _problem(api.post(f"/libraries/{lib}/documents", json=doc, headers=_as(READ)), 403,
                 "needs the write role")  # fmt: skip
        assert api.post(f"/libraries/{lib}/documents", json=doc, headers=_as(WRITE)).is_success
        # reads: listings, and queries although they are POSTs
        assert api.get(f"/libraries/{lib}", headers=_as(READ)).status_code == 200
        hits = api.post(f"/libraries/{lib}/query", json={"query_embedding": [1, 0], "k": 1},
                        headers=_as(READ))  # fmt: skip
        assert hits.status_code == 200 and len(hits.json()["results"]) == 1
        # a library's deletion and operator actions are the admin's
        _problem(api.delete(f"/libraries/{lib}", headers=_as(WRITE)), 403,
                 f"DELETE /libraries/{lib} needs the admin role")  # fmt: skip
        _problem(api.post("/admin/snapshot", headers=_as(WRITE)), 403, "needs the admin role")
        assert api.post("/admin/snapshot", headers=_as(ADMIN)).status_code == 200
        assert api.delete(f"/libraries/{lib}", headers=_as(ADMIN)).status_code == 204


def test_keys_are_rotated_with_sighup_and_a_broken_file_keeps_the_old_ones(
    start_node: Callable[..., NodeProcess], tmp_path: Path
) -> None:
    keys = tmp_path / "keys.json"
    keys.write_text(json.dumps([{"key": READ, "role": "read"}]))
    node = start_node("--keys-file", str(keys), "--api-key", ADMIN)
    fresh = "rotated-key-0123456789"

    def reloaded_until(check: Callable[[], bool]) -> None:
        os.kill(node.pid, signal.SIGHUP)
        deadline = time.monotonic() + 10
        while not check():
            assert time.monotonic() < deadline, node.log()
            time.sleep(0.05)

    with node.client() as api:
        assert api.get("/libraries", headers=_as(READ)).status_code == 200
        keys.write_text(json.dumps([{"key": fresh, "role": "write"}]))
        reloaded_until(lambda: api.get("/libraries", headers=_as(fresh)).status_code == 200)
        _problem(api.get("/libraries", headers=_as(READ)), 401, "not valid")
        # --api-key stays the admin's across reloads
        assert api.post("/admin/snapshot", headers=_as(ADMIN)).status_code == 200
        # a broken file, or an empty one (revoking everyone would open the
        # node to anyone), leaves the keys in force
        for n, broken in enumerate(["[{not json", "[]"], start=1):
            keys.write_text(broken)
            os.kill(node.pid, signal.SIGHUP)
            deadline = time.monotonic() + 10
            while node.log().count("keys not reloaded") < n:
                assert time.monotonic() < deadline, node.log()
                time.sleep(0.05)
            assert api.get("/libraries", headers=_as(fresh)).status_code == 200
            _problem(api.get("/libraries"), 401, "requires an API key")
        assert node.process is not None and node.process.poll() is None


def _serve(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    given = {key: value for key, value in os.environ.items() if not key.startswith("SHOAL_")}
    return subprocess.run([sys.executable, "-m", "node.cli", "serve", *args], cwd=REPO,
                          env={**given, **env}, capture_output=True, text=True,
                          timeout=60)  # fmt: skip


def test_serving_beyond_loopback_with_no_key_is_refused(tmp_path: Path) -> None:
    refused = _serve("--host", "0.0.0.0", "--port", "0", "--data", str(tmp_path / "d"))
    assert refused.returncode == 2
    assert "--host 0.0.0.0 serves beyond this machine, and no API key is set" in refused.stderr
    assert "--insecure" in refused.stderr and not (tmp_path / "d").exists()
    named = _serve("--data", str(tmp_path / "d"), SHOAL_HOST="db.internal")
    assert named.returncode == 2 and "no API key is set" in named.stderr
    broken = tmp_path / "keys.json"
    broken.write_text(json.dumps([{"key": "short", "role": "read"}]))
    bad = _serve("--keys-file", str(broken), "--data", str(tmp_path / "d"))
    assert bad.returncode == 2 and "at least 16 printable characters" in bad.stderr
    broken.write_text("[]")  # a keys file that asks for a key no one has is not no key
    empty = _serve("--host", "0.0.0.0", "--keys-file", str(broken), "--data", str(tmp_path / "d"))
    assert empty.returncode == 2 and "holds no keys" in empty.stderr


def test_a_node_joins_a_cluster_that_asks_for_keys(
    start_node: Callable[..., NodeProcess], tmp_path: Path
) -> None:
    """--join holds the cluster secret, not an API key: the membership levers
    take the secret."""
    secret = "join-secret-0123456789"
    first = start_node("--api-key", ADMIN, env={"SHOAL_CLUSTER_SECRET": secret})
    joining = start_node("--join", first.url, data=tmp_path / "joining", node_id="n2",
                         env={"SHOAL_CLUSTER_SECRET": secret})  # fmt: skip
    with joining.client() as api:
        view = api.get("/cluster", headers=_as(ADMIN)).json()
    assert view["role"] == "learner" and {m["id"] for m in view["members"]} == {"n1", "n2"}


@pytest.mark.parametrize(
    ("method", "path", "role"),
    [
        ("GET", "/health", None), ("GET", "/metrics", None), ("POST", "/_cluster/raft", None),
        ("GET", "/cluster", Role.READ), ("GET", "/libraries/l/documents", Role.READ),
        ("POST", "/libraries/l/query", Role.READ), ("POST", "/libraries/l/ask", Role.READ),
        ("GET", "/queries/w", Role.READ), ("POST", "/queries/w/cancel", Role.READ),
        ("GET", "/health/", None), ("POST", "/admin/members", None),
        ("POST", "/admin/members/n4/promote", None), ("DELETE", "/admin/members/n4", None),
        ("POST", "/admin/leadership", None), ("POST", "/admin/snapshot", Role.ADMIN),
        ("POST", "/libraries", Role.WRITE), ("PATCH", "/libraries/l", Role.WRITE),
        ("POST", "/libraries/l/documents", Role.WRITE),
        ("DELETE", "/libraries/l/documents/d", Role.WRITE),
        ("DELETE", "/libraries/l/chunks/c", Role.WRITE),
        ("DELETE", "/libraries/l", Role.ADMIN), ("POST", "/admin/backup", Role.ADMIN),
        ("GET", "/admin/anything", Role.ADMIN), ("POST", "/admin/membersx", Role.ADMIN),
    ],
)  # fmt: skip
def test_the_role_each_request_needs(method: str, path: str, role: Role | None) -> None:
    assert needed_role(method, path) is role


def test_a_keys_file_is_refused_with_the_entry_at_fault() -> None:
    cases = [
        ("{}", "must hold a JSON list"),
        ('[{"key": "0123456789abcdefg", "role": "owner"}]', "entry 0: role must be read"),
        ('[{"role": "read"}]', "entry 0 needs exactly one of key and sha256"),
        ('[{"key": "0123456789abcdefg", "role": "read", "x": 1}]', "unknown fields ['x']"),
        ('[{"sha256": "ABC", "role": "read"}]', "sha256 must be 64 lowercase hex digits"),
        ('[{"key": "0123456789abcdefg", "role": "read"},'
         ' {"key": "0123456789abcdefg", "role": "admin"}]', "lists one key twice"),
    ]  # fmt: skip
    for text, words in cases:
        with pytest.raises(KeysFileError, match=words.replace("[", r"\[")):
            parse_keys(text, "keys.json")
    ring = parse_keys('[{"key": "0123456789abcdefg", "role": "write"}]', "keys.json")
    assert ring.role_of("0123456789abcdefg") is Role.WRITE and ring.role_of("other") is None
    assert KeyRing().with_key(None, Role.ADMIN) == KeyRing()
