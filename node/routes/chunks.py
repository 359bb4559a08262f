"""/libraries/{id}/chunks/{chunk_id}: read, update, delete one chunk."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response, status

from node import models
from node.consistency import ReadBarrier
from node.deps import ServiceDep, mark_written
from node.responses import JSONBody
from node.service import read_soon

router = APIRouter(prefix="/libraries/{library_id}/chunks", tags=["chunks"])


@router.get("/{chunk_id}", response_model=models.Chunk)
async def get_chunk(
    _consistent: ReadBarrier,
    library_id: str,
    chunk_id: str,
    service: ServiceDep,
    include_embedding: bool = False,
) -> Any:
    return JSONBody(await read_soon(service.get_chunk, library_id, chunk_id, include_embedding))


@router.patch("/{chunk_id}", response_model=models.Chunk)
async def update_chunk(
    library_id: str,
    chunk_id: str,
    body: models.ChunkUpdate,
    service: ServiceDep,
    response: Response,
) -> Any:
    chunk, index = await service.update_chunk(library_id, chunk_id, body)
    mark_written(response, index)
    return chunk


@router.delete("/{chunk_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_chunk(library_id: str, chunk_id: str, service: ServiceDep) -> Response:
    index = await service.delete_chunk(library_id, chunk_id)
    response = Response(status_code=status.HTTP_204_NO_CONTENT)
    mark_written(response, index)
    return response
