"""POST /libraries/{id}/query: k nearest chunks, optionally filtered."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends
from starlette.concurrency import run_in_threadpool

from node import models
from node.body import body_schema, json_body
from node.consistency import ReadBarrier
from node.deps import ServiceDep
from node.responses import JSONBody
from node.service import query_is_small, read_soon

router = APIRouter(prefix="/libraries/{library_id}", tags=["query"])

QueryBody = Annotated[models.QueryRequest, Depends(json_body(models.QueryRequest))]


@router.post(
    "/query",
    response_model=models.QueryResponse,
    openapi_extra=body_schema(models.QueryRequest),
)
async def query(
    _consistent: ReadBarrier, library_id: str, body: QueryBody, service: ServiceDep
) -> Any:
    if query_is_small(service.state.library(library_id), body):
        return JSONBody(await read_soon(service.query, library_id, body))
    # A long scan, a filter over many rows or a text to embed: off the loop.
    return JSONBody(await run_in_threadpool(service.query, library_id, body))
