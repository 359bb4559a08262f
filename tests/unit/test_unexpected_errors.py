"""An error no handler takes is a 500 problem+json with the node's headers,
and the connection it came on still serves the next request."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from types import SimpleNamespace

import httpx
import pytest
from fastapi import FastAPI
from fastapi.responses import StreamingResponse
from prometheus_client import CollectorRegistry, Counter, Histogram

from node.keys import KeySource
from node.middleware import NodeMiddleware
from node.problems import install_error_handlers


def _app() -> NodeMiddleware:
    app = FastAPI()
    install_error_handlers(app)

    @app.get("/broken")
    def broken() -> None:
        raise ValueError("a bug")

    @app.get("/fine")
    def fine() -> dict[str, bool]:
        return {"ok": True}

    @app.get("/half")
    def half() -> StreamingResponse:
        def parts() -> Iterator[bytes]:
            yield b"[1,"
            raise RuntimeError("a bug halfway through an answer")

        return StreamingResponse(parts(), media_type="application/json")

    registry = CollectorRegistry()
    metrics = SimpleNamespace(
        requests=Counter("r", "r", ["method", "route", "status"], registry=registry),
        latency=Histogram("l", "l", ["method", "route"], registry=registry),
    )
    return NodeMiddleware(app, "n7", metrics, 1 << 20, KeySource(None, None))  # type: ignore[arg-type]


def test_an_unhandled_error_is_a_problem_with_the_node_header() -> None:
    async def run() -> None:
        transport = httpx.ASGITransport(app=_app(), raise_app_exceptions=True)
        async with httpx.AsyncClient(transport=transport, base_url="http://node") as client:
            broken = await client.get("/broken")
            assert broken.status_code == 500
            assert broken.headers["content-type"] == "application/problem+json"
            assert broken.headers["x-shoal-node"] == "n7"
            body = broken.json()
            assert body["status"] == 500 and "unexpected error" in body["detail"]
            assert body["instance"] == "/broken"
            assert (await client.get("/fine")).json() == {"ok": True}

    asyncio.run(run())


def test_an_error_halfway_through_an_answer_ends_the_connection() -> None:
    """The status is out already: only a cut-off answer can tell the client."""

    async def run() -> None:
        transport = httpx.ASGITransport(app=_app(), raise_app_exceptions=True)
        async with httpx.AsyncClient(transport=transport, base_url="http://node") as client:
            with pytest.raises(RuntimeError, match="halfway"):
                await client.get("/half")

    asyncio.run(run())
