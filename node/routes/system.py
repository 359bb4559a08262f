"""Health, readiness, cluster view, metrics and operator actions."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from cluster.status import leader_progress, peer_views
from node.deps import EngineDep
from node.errors import Unavailable
from node.timeutil import now_us, to_iso
from replication.membership import Configuration

router = APIRouter(tags=["system"])


@router.get("/health")
async def health(engine: EngineDep) -> JSONResponse:
    """Liveness: the process answers. It says nothing about data.

    On the event loop (no lock, no I/O): an answer here also says the loop
    that runs Raft is not stuck."""
    return JSONResponse({"status": "ok", "node_id": engine.settings.node_id})


@router.get("/ready")
async def ready(engine: EngineDep) -> JSONResponse:
    """Ready when a leader is known and this node has applied what it knows is
    committed (a cluster of one: as soon as it leads)."""
    reason = engine.ready_reason()
    if reason is None:
        return JSONResponse({"ready": True, "node_id": engine.settings.node_id})
    return JSONResponse(
        {"ready": False, "node_id": engine.settings.node_id, "reason": reason},
        status_code=503,
        headers={"Retry-After": "1"},
    )


@router.get("/cluster")
def cluster(
    engine: EngineDep,
    digest: Annotated[
        Literal["now"] | None,
        Query(
            description="`now`: the digest of the state as applied now, however long "
            "that takes; otherwise the newest one, taken again only when cheap"
        ),
    ] = None,
) -> dict[str, Any]:
    raft = engine.raft
    settings = engine.settings
    newest = engine.digests.view(now=digest == "now")
    snapshot = engine.last_snapshot
    recovery = engine.recovery
    urls = engine.member_urls()
    leader_id = raft.leader_id if raft else None
    try:
        membership: Configuration | None = engine.configuration
    except RuntimeError:  # starting, or joining
        membership = None
    role = raft.role.value if raft else "starting"
    voter = membership is not None and settings.node_id in membership.voters()
    if raft is not None and role == "follower" and membership is not None and not voter:
        role = "learner" if membership.has(settings.node_id) else "removed"
    return {
        "node_id": settings.node_id,
        "url": urls.get(settings.node_id, settings.url),
        "cluster_id": membership.cluster_id if membership else None,
        "members": [
            {"id": member.id, "url": member.url, "voter": member.voter}
            for member in (membership.members if membership else ())
        ],
        "role": role,
        "term": raft.term if raft else 0,
        "leader_id": leader_id,
        "leader_url": urls.get(leader_id) if leader_id else None,
        "commit_index": raft.commit_index if raft else 0,
        "applied_index": engine.applied_index,
        "state_digest": newest[1] if newest else None,
        "digest_index": newest[0] if newest else None,
        "peers": peer_views(raft, urls, 2 * settings.election_timeout) if raft else [],
        "progress": leader_progress(raft, 2 * settings.election_timeout) if raft else None,
        "ready": engine.ready_reason() is None,
        "failure": engine.failure,
        "waits_for_newer_leader": bool(
            raft and raft.core and raft.core.waits_for_leader_after is not None
        ),
        "wal": {
            "first_index": engine.log_store.first_index() if raft else None,
            "last_index": engine.log_store.last_index() if raft else None,
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
            "lost_tail": recovery.lost_tail,
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
    if engine.raft is None:
        raise Unavailable("the node is not ready; no snapshot taken")
    info = engine.snapshot_now()
    return {"index": info.index, "term": info.term, "file": info.path.name}
