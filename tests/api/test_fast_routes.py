"""The routes answered below the framework answer as the framework would.

One node in process, two ways in: the node's own stack (writes and queries
take the fast routes) and the same stack rebuilt without them (everything
through FastAPI). Each request goes both ways; errors must match byte for
byte, successes once ids, timestamps and log indexes are set aside.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient
from starlette.types import Receive, Scope, Send

from node.app import create_app
from node.errors import NotLeaderError
from node.middleware import NodeMiddleware
from node.settings import Settings

VIA = "x-test-via"
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
INSTANT = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z")


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    app = create_app(Settings(data_dir=tmp_path / "data", node_id="n1"))
    fast = app.build_middleware_stack()
    app.state.node_layer["json_routes"] = None
    framework = app.build_middleware_stack()
    assert isinstance(fast, NodeMiddleware) and isinstance(framework, NodeMiddleware)
    assert fast.json_routes is not None and framework.json_routes is None

    async def either(scope: Scope, receive: Receive, send: Send) -> None:
        headers = dict(scope.get("headers") or [])
        stack = framework if headers.get(VIA.encode()) == b"framework" else fast
        await stack(scope, receive, send)

    app.middleware_stack = either
    with TestClient(app, follow_redirects=False) as test_client:
        deadline = time.monotonic() + 30
        while test_client.get("/ready").status_code != 200:
            assert time.monotonic() < deadline, "the node did not get ready"
            time.sleep(0.05)
        yield test_client


def both(client: TestClient, method: str, url: str, **kw: Any) -> tuple[Any, Any]:
    given = kw.pop("headers", {})
    headers = list(given.items()) if isinstance(given, dict) else list(given)
    fast = client.request(method, url, headers=headers, **kw)
    framework = client.request(method, url, headers=[*headers, (VIA, "framework")], **kw)
    return fast, framework


# Header values that differ between two successful writes (or two timings).
VARYING = {"date", "x-shoal-index", "location", "content-length"}


def same(fast: Any, framework: Any, exact: bool) -> None:
    assert fast.status_code == framework.status_code, (fast.text, framework.text)
    assert set(fast.headers) == set(framework.headers)
    for name, value in framework.headers.items():
        if name != "date" and (exact or name not in VARYING):
            assert fast.headers[name] == value, (name, fast.headers[name], value)
    if exact:
        assert fast.content == framework.content
    else:
        def plain(text: str) -> str:
            text = INSTANT.sub("<instant>", UUID.sub("<id>", text))
            return re.sub(r'"took_ms":[0-9.e-]+', '"took_ms":0', text)

        assert plain(fast.text) == plain(framework.text)


def test_writes_and_queries_answer_the_same_both_ways(client: TestClient) -> None:
    library = client.post("/libraries", json={"name": "l", "metric": "cosine"}).json()["id"]
    docs = f"/libraries/{library}/documents"
    query = f"/libraries/{library}/query"
    chunk = {"text": "one", "embedding": [1, 0, 0], "metadata": {"page_number": 2}}
    body = {"metadata": {"title": "t", "tags": ["a"]}, "chunks": [chunk]}
    same(*both(client, "POST", docs, json=body), exact=False)
    bad_requests: list[tuple[str, dict[str, Any]]] = [
        (docs, {"content": b""}),
        (docs, {"content": b"{", "headers": {"content-type": "application/json"}}),
        (docs, {"content": b"{}", "headers": {"content-type": "text/plain"}}),
        (docs, {"json": {"chunks": [{"text": "x", "embedding": "no"}]}}),
        (docs, {"json": {"chunks": [{"text": "x", "embedding": [1, 0]}]}}),  # wrong width
        (docs, {"json": {"chunks": [], "surprise": 1}}),
        ("/libraries/none/documents", {"json": body}),
        (query, {"json": {"query_embedding": [1, 0, 0], "k": 0}}),
        (query, {"json": {"query_embedding": [1, 0], "k": 1}}),
        (query, {"json": {"k": 1}}),
        (query + "?consistency=bogus", {"json": {"query_embedding": [1, 0, 0], "k": 1}}),
        (query + "?consistency=", {"json": {"query_embedding": [1, 0, 0], "k": 1}}),
        (query, {"json": {"query_embedding": [1, 0, 0], "k": 1},
                 "headers": {"x-shoal-min-index": "x1"}}),  # fmt: skip
        (query, {"json": {"query_embedding": [1, 0, 0], "k": 1, "filters": {"op": "nope"}}}),
        ("/libraries/none/query", {"json": {"query_embedding": [1, 0, 0], "k": 1}}),
        ("/libraries/a%3Fb%23c/query", {"json": {"query_embedding": [1, 0, 0], "k": 1}}),
        # the first of a repeated header counts, as in the framework
        (query, {"json": {"query_embedding": [1, 0, 0], "k": 1},
                 "headers": [("x-shoal-min-index", "x"), ("x-shoal-min-index", "1")]}),
        (query, {"json": {"query_embedding": [1, 0, 0], "k": 1},
                 "headers": [("x-shoal-consistency", "bogus"),
                             ("x-shoal-consistency", "eventual")]}),
        (docs, {"content": b'{"chunks": []}',
                "headers": [("content-type", "text/plain"), ("content-type", "application/json")]}),
        # a bad parameter and a bad body: the body's problem comes first
        (query + "?consistency=bogus", {"content": b""}),
        (query + "?consistency=bogus", {"json": {"query_embedding": [1, 0, 0], "k": 0}}),
    ]  # fmt: skip
    for url, kw in bad_requests:
        fast, framework = both(client, "POST", url, **kw)
        assert fast.status_code >= 400, (url, kw, fast.text)
        same(fast, framework, exact=True)
    for consistency in ("", "?consistency=linearizable", "?consistency=session"):
        found = {"query_embedding": [1, 0.1, 0], "k": 3, "include": ["text", "metadata"]}
        same(*both(client, "POST", query + consistency, json=found), exact=False)
    document = client.post(docs, json=body).json()["id"]
    for params in ("", "?include_chunks=true", "?include_chunks=1&include_embeddings=yes",
                   "?consistency=linearizable&include_chunks=false", "?include_chunks=maybe",
                   "?consistency=bogus", "?include_embeddings=",
                   "?consistency=bogus&include_chunks=maybe&include_embeddings=no",
                   "?include_chunks=true&include_chunks=false"):  # fmt: skip
        same(*both(client, "GET", f"{docs}/{document}{params}"), exact=True)
    for missing in (f"{docs}/nope", f"/libraries/none/documents/{document}", f"{docs}/a%3Fb"):
        same(*both(client, "GET", missing), exact=True)
    fast, _ = both(client, "POST", query, json={"query_embedding": [1, 0, 0], "k": 1})
    assert fast.json()["results"][0]["text"] == "one"


def test_a_follower_redirects_a_write_the_same_way(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A write on a follower is a 307 to the leader, path escaped again and
    query kept: the client re-sends exactly this request there."""
    service = client.app.state.service  # type: ignore[attr-defined]

    async def follower(*_: Any) -> Any:
        raise NotLeaderError("n2", "http://127.0.0.1:7702")

    monkeypatch.setattr(service, "add_document", follower)
    body = {"chunks": [{"text": "x", "embedding": [1.0, 0.0]}]}
    for url in ("/libraries/l1/documents", "/libraries/a%3Fb%23c/documents?x=1&y=%20"):
        fast, framework = both(client, "POST", url, json=body)
        assert fast.status_code == 307
        same(fast, framework, exact=True)
    assert fast.headers["location"] == "http://127.0.0.1:7702/libraries/a%3Fb%23c/documents?x=1&y=%20"


def test_an_unexpected_error_is_the_same_problem_both_ways(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bug answers 500 with the node's header either way (the node's layer
    sits outside the framework's error handler)."""
    client._transport.raise_server_exceptions = False  # type: ignore[attr-defined]
    library = client.post("/libraries", json={"name": "e"}).json()["id"]

    def broken(*_: Any) -> Any:
        raise RuntimeError("a bug")

    monkeypatch.setattr(client.app.state.service, "get_document", broken)  # type: ignore[attr-defined]
    fast, framework = both(client, "GET", f"/libraries/{library}/documents/d1")
    assert fast.status_code == 500 and fast.headers["x-shoal-node"] == "n1"
    same(fast, framework, exact=True)


def test_a_metric_names_the_route_not_the_library(client: TestClient) -> None:
    library = client.post("/libraries", json={"name": "m"}).json()["id"]
    client.post(f"/libraries/{library}/query", json={"query_embedding": [1.0], "k": 1})
    metrics = client.get("/metrics").text
    assert 'route="/libraries/{library_id}/query"' in metrics
    assert library not in metrics
