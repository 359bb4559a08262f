"""Questions end to end: Temporal dev server, three nodes, a worker process."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from shoal_client import AsyncClient, Client, NotFound

from temporal.routing import Target, route_order
from tests.cluster_harness import ClusterProcesses
from tests.fake_cohere import FakeCohere
from tests.harness import REPO
from tests.temporal.conftest import Worker

pytestmark = pytest.mark.cluster
Setup = Callable[..., tuple[ClusterProcesses, Worker]]

PASSAGES = [
    "The Amazon river carries more water than any other river. It flows through Brazil.",
    "Mount Everest is the highest mountain above sea level. It lies in the Himalayas.",
    "Honey never spoils when it is sealed. Archaeologists found edible honey in tombs.",
    "Octopuses have three hearts and blue blood. Two hearts pump blood to the gills.",
]


def library_with_passages(cluster: ClusterProcesses) -> str:
    leader = cluster.leader()
    with cluster.client(leader) as api:
        library = api.post("/libraries", json={"name": "facts"}).json()
        for passage in PASSAGES:
            response = api.post(f"/libraries/{library['id']}/documents", json={"text": passage})
            assert response.status_code == 201, response.text
    cluster.converged()
    return str(library["id"])


def wait_for(
    client: httpx.Client,
    workflow_id: str,
    until: Callable[[dict[str, Any]], bool],
    timeout: float = 60.0,
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    view: dict[str, Any] = {}
    while time.monotonic() < deadline:
        view = client.get(f"/queries/{workflow_id}").json()
        if until(view):
            return view
        time.sleep(0.2)
    raise AssertionError(f"question did not get there in time: {view}")


def test_answered_from_a_follower(question_setup: Setup) -> None:
    cluster, _ = question_setup()
    library_id = library_with_passages(cluster)
    follower = cluster.followers()[0]
    with cluster.client(follower) as api:
        started = api.post(
            f"/libraries/{library_id}/ask",
            json={"question": "How many hearts does an octopus have?", "k": 2},
        )
        assert started.status_code == 202, started.text
        workflow_id = started.json()["workflow_id"]
        view = wait_for(api, workflow_id, lambda v: v.get("status") != "running")
    assert view["status"] == "completed", view
    assert view["mode"] == "extractive"
    assert "three hearts" in view["answer"]
    assert view["citations"] and view["sources"]
    assert view["served_by"] in cluster.followers()


def test_follower_killed_mid_run_completes_on_another(question_setup: Setup) -> None:
    cluster, _ = question_setup()
    library_id = library_with_passages(cluster)
    followers = cluster.followers()
    targets = [Target(n, cluster.nodes[n].url) for n in followers]
    workflow_id = "ask-failover-1"
    preferred = route_order(targets, workflow_id)[0].node_id
    survivor = next(n for n in followers if n != preferred)
    leader = cluster.leader()
    cluster.kill(preferred)  # the leader still lists it as reachable for a moment
    with cluster.client(leader) as api:
        started = api.post(f"/libraries/{library_id}/ask",
                           json={"question": "Where is Mount Everest?", "k": 2,
                                 "workflow_id": workflow_id})  # fmt: skip
        assert started.status_code == 202, started.text
        view = wait_for(api, workflow_id, lambda v: v.get("status") != "running")
    assert view["status"] == "completed", view
    assert view["served_by"] == survivor
    tried = [attempt["node"] for attempt in view["attempts"]]
    assert tried[0] == preferred and view["attempts"][0]["error"]
    assert "Himalayas" in view["answer"] or "highest" in view["answer"]


def test_cancel(question_setup: Setup, fake_cohere: FakeCohere) -> None:
    cluster, _ = question_setup(cohere=fake_cohere)
    library_id = library_with_passages(cluster)
    fake_cohere.chat_delay = 20.0
    try:
        with cluster.client(cluster.leader()) as api:
            started = api.post(
                f"/libraries/{library_id}/ask", json={"question": "Does honey spoil?"}
            )
            workflow_id = started.json()["workflow_id"]
            wait_for(api, workflow_id, lambda v: v.get("step") == "answer")
            cancelled = api.post(f"/queries/{workflow_id}/cancel")
            assert cancelled.status_code == 202
            view = wait_for(api, workflow_id, lambda v: v.get("status") != "running", 15)
            assert view["status"] == "cancelled" and view["step"] == "answer"
            missing = api.post("/queries/no-such-question/cancel")
            assert missing.status_code == 404
    finally:
        fake_cohere.chat_delay = 0.0


def test_cohere_path_through_the_sdk(question_setup: Setup, fake_cohere: FakeCohere) -> None:
    cluster, _ = question_setup(cohere=fake_cohere)
    leader = cluster.leader()
    fake_cohere.requests.clear()
    with cluster.client(leader) as api:
        library = api.post("/libraries", json={"name": "cohere-facts"}).json()
        assert library["embedding_model"] == "embed-english-v3.0"
        fake_cohere.fail_next["embed"] = [429]  # the leader's first embed call is refused
        made = api.post(f"/libraries/{library['id']}/documents", json={"text": " ".join(PASSAGES)})
        assert made.status_code == 201, made.text
        assert api.get(f"/libraries/{library['id']}").json()["dimension"] == 1024
        embeds = fake_cohere.calls("embed")
        assert len(embeds) == 2 and embeds[0] == embeds[1]  # 429, then the same call again
        assert embeds[0]["input_type"] == "search_document"
        cluster.converged()
        started = api.post(
            f"/libraries/{library['id']}/ask",
            json={"question": "Which river carries the most water?"},
        )
        view = wait_for(api, started.json()["workflow_id"], lambda v: v.get("status") != "running")
    assert view["status"] == "completed", view
    assert view["mode"] == "generated" and "Amazon" in view["answer"]
    cited = {citation["chunk_id"] for citation in view["citations"]}
    assert cited and cited <= {source["chunk_id"] for source in view["sources"]}
    assert fake_cohere.calls("embed")[-1]["input_type"] == "search_query"
    assert fake_cohere.calls("rerank") and fake_cohere.calls("chat")


def test_asking_without_temporal_is_a_clear_503(tmp_path: Any) -> None:
    from tests.harness import NodeProcess

    node = NodeProcess(tmp_path / "solo").start()
    try:
        with node.client() as api:
            library = api.post("/libraries", json={"name": "lonely"}).json()
            response = api.post(f"/libraries/{library['id']}/ask", json={"question": "hi"})
            assert response.status_code == 503 and "Temporal" in response.json()["detail"]
            assert api.post("/libraries/nope/ask", json={"question": "hi"}).status_code == 404
    finally:
        node.stop()


def test_sdk_and_cli_ask(question_setup: Setup) -> None:
    cluster, _ = question_setup()
    library_id = library_with_passages(cluster)
    urls = [node.url for node in cluster.nodes.values()]
    with Client(urls) as shoal:
        answer = shoal.ask(library_id, "Where is Mount Everest?", k=2, timeout=60)
        assert answer.status == "completed" and "Himalayas" in (answer.answer or "")
        assert answer.sources and answer.served_by in cluster.followers()
        with pytest.raises(NotFound, match="nope"):
            shoal.ask("nope", "anything?")

    async def ask_async() -> str:
        async with AsyncClient(urls) as shoal:
            view = await shoal.ask(library_id, "Does honey spoil?", k=2, timeout=60)
            assert view.status == "completed", view
            return view.answer or ""

    assert "spoils" in asyncio.run(ask_async())

    def shoal_cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "node.cli", "ask", *args,
                               "--url", ",".join(urls)], cwd=REPO, capture_output=True,
                              text=True, timeout=120)  # fmt: skip

    printed = shoal_cli("How many hearts does an octopus have?", "--library", library_id)
    assert printed.returncode == 0, printed.stderr
    assert "three hearts" in printed.stdout and "sources (retrieved from n" in printed.stdout
    refused = shoal_cli("anything?", "--library", "nope")
    assert refused.returncode == 1 and "library nope does not exist" in refused.stderr
