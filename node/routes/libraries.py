"""/libraries: create, list, read, rename, delete."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response, status

from node import models
from node.consistency import ReadBarrier
from node.deps import Cursor, Limit, ServiceDep, mark_written
from node.responses import JSONBody
from node.service import read_soon

router = APIRouter(prefix="/libraries", tags=["libraries"])


@router.post("", status_code=status.HTTP_201_CREATED, response_model=models.Library)
async def create_library(
    body: models.LibraryCreate, service: ServiceDep, response: Response
) -> Any:
    library, index = await service.create_library(body)
    mark_written(response, index)
    response.headers["Location"] = f"/libraries/{library['id']}"
    return library


@router.get("", response_model=models.LibraryPage)
def list_libraries(
    _consistent: ReadBarrier, service: ServiceDep, cursor: Cursor = None, limit: Limit = 100
) -> Any:
    return JSONBody(service.list_libraries(cursor, limit))


@router.get("/{library_id}", response_model=models.Library)
async def get_library(_consistent: ReadBarrier, library_id: str, service: ServiceDep) -> Any:
    return JSONBody(await read_soon(service.get_library, library_id))


@router.patch("/{library_id}", response_model=models.Library)
async def update_library(
    library_id: str, body: models.LibraryUpdate, service: ServiceDep, response: Response
) -> Any:
    library, index = await service.update_library(library_id, body)
    mark_written(response, index)
    return library


@router.delete("/{library_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_library(library_id: str, service: ServiceDep) -> Response:
    index = await service.delete_library(library_id)
    response = Response(status_code=status.HTTP_204_NO_CONTENT)
    mark_written(response, index)
    return response
