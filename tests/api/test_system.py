"""Operations endpoints and the command line."""

from __future__ import annotations

import subprocess
import sys

import httpx

from tests.harness import REPO


def test_openapi_documents_raw_body_routes(api: httpx.Client) -> None:
    schema = api.get("/openapi.json").json()
    body = schema["paths"]["/libraries/{library_id}/documents"]["post"]["requestBody"]
    assert body["content"]["application/json"]["schema"]["$ref"].endswith("/DocumentCreate")
    components = schema["components"]["schemas"]
    assert "chunks" in components["DocumentCreate"]["properties"]
    assert "ChunkCreate" in components


def test_cluster_of_one(api: httpx.Client) -> None:
    before = api.get("/cluster").json()
    assert before["role"] == "leader" and before["peers"] == []
    assert before["leader_url"] == before["url"]
    response = api.post("/libraries", json={"name": "cluster-view"})
    after = api.get("/cluster").json()
    assert after["commit_index"] == int(response.headers["X-Shoal-Index"])
    assert after["applied_index"] == after["commit_index"] > before["commit_index"]
    assert after["state_digest"] != before["state_digest"]
    assert api.get("/cluster").json()["state_digest"] == after["state_digest"]


def test_metrics_count_requests(api: httpx.Client) -> None:
    api.get("/libraries/does-not-exist")
    text = api.get("/metrics").text
    assert 'route="/libraries/{library_id}",status="404"' in text
    assert "shoal_wal_fsyncs_total" in text and "shoal_applied_index" in text


def test_snapshot_on_demand(api: httpx.Client) -> None:
    api.post("/libraries", json={"name": "snap-on-demand"})
    taken = api.post("/admin/snapshot").json()
    assert taken["index"] == api.get("/cluster").json()["applied_index"]
    assert api.get("/cluster").json()["snapshot"]["index"] == taken["index"]


def test_invalid_settings_are_refused_with_a_sentence() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "node.cli", "serve", "--port", "99999"],
        cwd=REPO, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 2
    assert "invalid settings" in result.stderr and "port" in result.stderr
