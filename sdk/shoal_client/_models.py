"""Typed results. Unknown fields are kept (servers may be newer than clients)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict


class _Model(BaseModel):
    model_config = ConfigDict(extra="allow")


class Library(_Model):
    id: str
    name: str
    description: str | None = None
    dimension: int | None = None
    metric: str
    index_type: str
    index_params: dict[str, Any] = {}
    embedding_model: str
    created_at: str
    updated_at: str
    document_count: int = 0
    chunk_count: int = 0


class Chunk(_Model):
    id: str
    library_id: str
    document_id: str
    text: str
    metadata: dict[str, Any] = {}
    updated_at: str
    embedding: list[float] | None = None


class Document(_Model):
    id: str
    library_id: str
    metadata: dict[str, Any] = {}
    chunk_count: int = 0
    chunk_ids: list[str] = []
    created_at: str
    updated_at: str
    chunks: list[Chunk] | None = None


class Hit(_Model):
    chunk_id: str
    document_id: str
    score: float
    distance: float
    text: str | None = None
    metadata: dict[str, Any] | None = None
    embedding: list[float] | None = None
    document: dict[str, Any] | None = None


class QueryResult(_Model):
    library_id: str
    k: int
    metric: str
    index_type: str
    exact: bool
    took_ms: float
    results: list[Hit]
    served_by: str | None = None


class Source(_Model):
    chunk_id: str
    document_id: str
    text: str
    score: float
    rerank_score: float | None = None


class Answer(_Model):
    workflow_id: str
    status: str
    step: str | None = None
    answer: str | None = None
    mode: str | None = None
    citations: list[dict[str, Any]] = []
    sources: list[Source] = []
    served_by: str | None = None
    error: str | None = None


class Peer(_Model):
    id: str
    url: str
    reachable: bool
    match_index: int | None = None
    lag: int | None = None


class MemberProgress(_Model):
    id: str
    match_index: int | None = None  # None: the leader has not learned it yet
    lag: int | None = None
    last_contact_seconds: float | None = None


class LeaderProgress(_Model):
    """Every member's progress as the leader sees it (from any node)."""

    leader_id: str | None = None
    term: int
    age_seconds: float
    leader_last_index: int
    members: list[MemberProgress] = []


class NodeStatus(_Model):
    node_id: str
    url: str
    role: str
    term: int
    leader_id: str | None = None
    leader_url: str | None = None
    commit_index: int
    applied_index: int
    state_digest: str | None = None  # null until a digest was taken (see digest_index)
    digest_index: int | None = None
    ready: bool | None = None
    peers: list[Peer] = []
    progress: LeaderProgress | None = None
