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
    now = {"digest": "now"}
    before = api.get("/cluster", params=now).json()
    assert before["role"] == "leader" and before["peers"] == []
    assert before["leader_url"] == before["url"]
    response = api.post("/libraries", json={"name": "cluster-view"})
    after = api.get("/cluster", params=now).json()
    assert after["commit_index"] == int(response.headers["X-Shoal-Index"])
    assert after["applied_index"] == after["commit_index"] > before["commit_index"]
    assert after["digest_index"] == after["applied_index"]
    assert after["state_digest"] != before["state_digest"]
    again = api.get("/cluster").json()  # the one just taken, or one as current
    assert (again["digest_index"], again["state_digest"]) == (
        after["digest_index"],
        after["state_digest"],
    )


def test_cluster_digest_asks_for_a_known_word(api: httpx.Client) -> None:
    response = api.get("/cluster", params={"digest": "later"})
    assert response.status_code == 422
    assert response.headers["content-type"].startswith("application/problem+json")
    assert "digest" in response.text


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
