"""create_app(settings) -> FastAPI: one node's HTTP face, with no module globals."""

from __future__ import annotations

import asyncio
import functools
import logging
import signal
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp

from node import body, problems, raft_endpoint
from node.embeddings import EmbeddingRegistry, build_registry
from node.engine import DataDirInUse, Engine
from node.fast_routes import FastRoutes
from node.keys import KeySource
from node.limits import Admission
from node.metrics import NodeMetrics
from node.middleware import NodeMiddleware
from node.problems import install_error_handlers
from node.questions import Questions
from node.raft_endpoint import raft_post
from node.routes import (
    ask,
    backup,
    chunks,
    documents,
    internal,
    leadership,
    libraries,
    members,
    query,
    system,
)
from node.service import Service
from node.settings import Settings
from replication.membership import CorruptMembership, MembershipRefused
from wal import CorruptLog, CorruptSnapshot, CorruptStableState

log = logging.getLogger("shoal.node")

API_VERSION = "0.1.0"


def _reload_on_sighup(reloads: list[Callable[[], object]]) -> bool:
    """``kill -HUP`` reads the keys file (and, under ``shoal serve``, the TLS
    certificate) again, only where the loop may own signals: the main thread.
    Taken from the start, so a HUP during a long recovery does not end the
    process."""
    if threading.current_thread() is not threading.main_thread():
        return False

    def reload_all() -> None:
        for reload in reloads:
            try:
                reload()
            except Exception:  # one failing must not stop the others, nor the node
                log.exception("SIGHUP: reloading failed; what was in force stays")

    try:
        asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, reload_all)
    except (RuntimeError, ValueError, NotImplementedError):
        return False
    return True


def create_app(
    settings: Settings, embedders: EmbeddingRegistry | None = None, exit_on_failure: bool = False
) -> FastAPI:
    """``exit_on_failure``: a node that fails ends its process (``shoal serve``)."""
    engine = Engine(settings, exit_on_failure)
    keys = KeySource(settings.keys_file, settings.api_key)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        reloading = _reload_on_sighup(app.state.reloads)
        try:
            await run_in_threadpool(engine.open)
        except (
            CorruptLog, CorruptSnapshot, CorruptStableState, CorruptMembership,
            MembershipRefused, DataDirInUse,
        ) as exc:  # fmt: skip
            log.critical("cannot start node %s: %s", settings.node_id, exc)
            raise
        await engine.start()
        try:
            yield
        finally:
            if reloading:
                asyncio.get_running_loop().remove_signal_handler(signal.SIGHUP)
            await engine.stop()
            registry.close()

    app = FastAPI(
        title="Shoal",
        version=API_VERSION,
        summary="A replicated vector database: libraries, documents, chunks, kNN queries.",
        lifespan=lifespan,
    )
    metrics = NodeMetrics(engine)
    app.state.engine = engine
    # What SIGHUP reads again; shoal serve adds the TLS certificate.
    app.state.reloads = [keys.reload]
    app.state.metrics = metrics
    registry = embedders or build_registry(
        settings.cohere_api_key, settings.cohere_embed_model, settings.cohere_base_url
    )
    service = Service(engine, registry, settings.max_answer_bytes)
    app.state.service = service
    install_error_handlers(app)
    body.document(app)
    problems.document(app)
    app.state.questions = Questions(settings)
    for module in (libraries, documents, chunks, query, ask, system, leadership, members,
                   backup, internal):  # fmt: skip
        app.include_router(module.router)
    # Our layer goes outside the framework's own (error handling, telemetry,
    # body limit): the fast routes skip those, and every answer, a 500 from
    # the framework's error handler too, passes through it and carries the
    # node's header. Tests may change these options before the first request.
    app.state.node_layer = {
        "node_id": settings.node_id,
        "metrics": metrics,
        "max_body_bytes": settings.max_body_bytes,
        "keys": keys,
        "require_peer_cert": settings.peer_ca is not None,
        "admission": Admission(
            settings.rate_limit,
            settings.rate_burst or 2 * settings.rate_limit,
            settings.max_writes_in_flight,
        ),  # fmt: skip
        "fast_routes": {("POST", raft_endpoint.PATH): functools.partial(raft_post, engine)},
        "json_routes": FastRoutes(service),
    }
    build_framework = app.build_middleware_stack

    def build_stack() -> ASGIApp:
        return NodeMiddleware(build_framework(), **app.state.node_layer)

    app.build_middleware_stack = build_stack  # type: ignore[method-assign]
    return app
