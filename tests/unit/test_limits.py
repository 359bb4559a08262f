"""Admission (node.limits): a request rate per client and a cap on the
writes in flight, through the node's own middleware."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import httpx
import pytest
from fastapi import FastAPI
from prometheus_client import CollectorRegistry, Counter, Histogram

from node import limits
from node.errors import TooManyRequests
from node.keys import KeySource
from node.limits import Admission
from node.middleware import NodeMiddleware
from node.problems import install_error_handlers


def test_each_client_gets_its_rate_and_its_bursts() -> None:
    admission = Admission(rate=2.0, burst=4.0, max_writes=100)
    for _ in range(4):
        admission.admit("a", False, now=0.0)
    with pytest.raises(TooManyRequests, match="more than 2 requests a second") as refused:
        admission.admit("a", False, now=0.0)
    assert refused.value.headers["Retry-After"] == "1"
    admission.admit("b", False, now=0.0)  # another client is not held back
    admission.admit("a", False, now=0.5)  # one token came back in half a second
    with pytest.raises(TooManyRequests):
        admission.admit("a", False, now=0.5)


def test_the_buckets_kept_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(limits, "MAX_CLIENTS", 3)
    admission = Admission(rate=1.0, burst=1.0, max_writes=100)
    for client in "abcd":
        admission.admit(client, False, now=0.0)
    assert list(admission._buckets) == ["b", "c", "d"]


def _node(admission: Admission) -> tuple[NodeMiddleware, asyncio.Event]:
    app = FastAPI()
    install_error_handlers(app)
    release = asyncio.Event()

    @app.post("/libraries")
    async def write() -> dict[str, bool]:
        await release.wait()
        return {"written": True}

    @app.get("/libraries")
    async def read() -> dict[str, bool]:
        return {"read": True}

    registry = CollectorRegistry()
    metrics = SimpleNamespace(
        requests=Counter("r", "r", ["method", "route", "status"], registry=registry),
        latency=Histogram("l", "l", ["method", "route"], registry=registry),
    )
    node = NodeMiddleware(app, "n1", metrics, 1 << 20, KeySource(None, None),  # type: ignore[arg-type]
                          admission=admission)  # fmt: skip
    return node, release


def test_writes_beyond_the_cap_are_refused_until_answers_leave() -> None:
    async def run() -> None:
        admission = Admission(rate=0, burst=1, max_writes=2)
        node, release = _node(admission)
        transport = httpx.ASGITransport(app=node)
        async with httpx.AsyncClient(transport=transport, base_url="http://node") as client:
            held = [asyncio.create_task(client.post("/libraries")) for _ in range(2)]
            while admission.writes < 2:
                await asyncio.sleep(0.01)
            refused = await client.post("/libraries")
            assert refused.status_code == 429 and refused.headers["Retry-After"] == "1"
            assert refused.headers["content-type"] == "application/problem+json"
            assert "2 writes in flight" in refused.json()["detail"]
            assert (await client.get("/libraries")).status_code == 200  # reads still go
            release.set()
            assert [(await task).status_code for task in held] == [200, 200]
            assert admission.writes == 0
            assert (await client.post("/libraries")).status_code == 200

    asyncio.run(run())


def test_a_flooding_client_is_told_when_to_come_back() -> None:
    async def run() -> None:
        node, release = _node(Admission(rate=1.0, burst=3.0, max_writes=10))
        release.set()
        transport = httpx.ASGITransport(app=node)
        async with httpx.AsyncClient(transport=transport, base_url="http://node") as client:
            answers = [await client.get("/libraries") for _ in range(5)]
            assert [a.status_code for a in answers] == [200, 200, 200, 429, 429]
            assert answers[3].headers["Retry-After"] == "1"
            assert answers[3].headers["x-shoal-node"] == "n1"
            keyed = await client.get("/libraries", headers={"X-API-Key": "another-client"})
            assert keyed.status_code == 200  # counted apart: its own key

    asyncio.run(run())
