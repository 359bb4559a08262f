"""Health, readiness, cluster view, metrics and operator actions."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from node.deps import EngineDep
from node.errors import Unavailable
from node.timeutil import now_us, to_iso

router = APIRouter(tags=["system"])


@router.get("/health")
def health(engine: EngineDep) -> dict[str, Any]:
    """Liveness: the process answers. It says nothing about data."""
    return {"status": "ok", "node_id": engine.settings.node_id}


@router.get("/ready")
def ready(engine: EngineDep) -> JSONResponse:
    """Ready when this node leads (a cluster of one) and can make writes durable."""
    if engine.ready:
        return JSONResponse({"ready": True, "node_id": engine.settings.node_id})
    reason = engine.failure or "the node is starting or stopping"
    return JSONResponse(
        {"ready": False, "node_id": engine.settings.node_id, "reason": reason},
        status_code=503,
        headers={"Retry-After": "1"},
    )


@router.get("/cluster")
def cluster(engine: EngineDep) -> dict[str, Any]:
    replicator = engine.replicator
    digest_index, digest = engine.digest()
    snapshot = engine.last_snapshot
    recovery = engine.recovery
    settings = engine.settings
    return {
        "node_id": settings.node_id,
        "url": settings.url,
        "role": "leader" if engine.ready else "unavailable",
        "term": replicator.term if replicator else 0,
        "leader_id": settings.node_id if engine.ready else None,
        "leader_url": settings.url if engine.ready else None,
        "commit_index": replicator.commit_index if replicator else 0,
        "applied_index": engine.state.applied_index,
        "state_digest": digest,
        "digest_index": digest_index,
        "peers": [],
        "failure": engine.failure,
        "wal": {
            "first_index": engine.log_store.first_index() if replicator else None,
            "last_index": engine.log_store.last_index() if replicator else None,
            "segments": engine.log_store.segment_count(),
            "fsync": settings.fsync.value,
        },
        "snapshot": {"index": snapshot.index, "term": snapshot.term} if snapshot else None,
        "recovery": None
        if recovery is None
        else {
            "snapshot_index": recovery.snapshot_index,
            "replayed_entries": recovery.replayed,
            "torn_bytes_cut": recovery.torn_bytes_cut,
            "seconds": round(recovery.seconds, 3),
        },
        "time": to_iso(now_us()),
    }


@router.get("/metrics", include_in_schema=False)
def metrics(request: Request) -> Response:
    registry = request.app.state.metrics.registry
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)


@router.post("/admin/snapshot")
def take_snapshot(engine: EngineDep) -> dict[str, Any]:
    """Write a snapshot now (the log is compacted behind the previous one)."""
    if not engine.ready:
        raise Unavailable("the node is not ready; no snapshot taken")
    info = engine.snapshot_now()
    return {"index": info.index, "term": info.term, "file": info.path.name}
