"""POST /libraries/{id}/query: k nearest chunks, optionally filtered."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends

from node import models
from node.body import body_schema, json_body
from node.consistency import ReadBarrier
from node.deps import ServiceDep
from node.responses import JSONBody

router = APIRouter(prefix="/libraries/{library_id}", tags=["query"])

QueryBody = Annotated[models.QueryRequest, Depends(json_body(models.QueryRequest))]


@router.post(
    "/query",
    response_model=models.QueryResponse,
    openapi_extra=body_schema(models.QueryRequest),
)
def query(_consistent: ReadBarrier, library_id: str, body: QueryBody, service: ServiceDep) -> Any:
    # A plain def: FastAPI runs it on a worker thread, off the event loop.
    return JSONBody(service.query(library_id, body))
