"""POST /libraries/{id}/query: k nearest chunks, optionally filtered."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from node import models
from node.deps import ServiceDep

router = APIRouter(prefix="/libraries/{library_id}", tags=["query"])


@router.post("/query", response_model=models.QueryResponse)
def query(library_id: str, body: models.QueryRequest, service: ServiceDep) -> Any:
    # A plain def: FastAPI runs it on a worker thread, off the event loop.
    return service.query(library_id, body)
