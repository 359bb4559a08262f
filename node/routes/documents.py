"""/libraries/{id}/documents and the chunks under a document."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Response, status
from starlette.concurrency import run_in_threadpool

from node import models
from node.body import body_schema, json_body
from node.consistency import ReadBarrier
from node.deps import Cursor, Limit, ServiceDep, mark_written
from node.responses import JSONBody, written
from node.service import read_soon

router = APIRouter(prefix="/libraries/{library_id}/documents", tags=["documents"])


DocumentBody = Annotated[models.DocumentCreate, Depends(json_body(models.DocumentCreate))]
ChunksBody = Annotated[models.ChunksCreate, Depends(json_body(models.ChunksCreate))]


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=models.Document,
    openapi_extra=body_schema(models.DocumentCreate),
)
async def create_document(library_id: str, body: DocumentBody, service: ServiceDep) -> Any:
    document, index = await service.add_document(library_id, body)
    location = f"/libraries/{library_id}/documents/{document['id']}"
    return written(document, index, status.HTTP_201_CREATED, location)


@router.get("", response_model=models.DocumentPage)
def list_documents(
    _consistent: ReadBarrier,
    library_id: str,
    service: ServiceDep,
    cursor: Cursor = None,
    limit: Limit = 100,
) -> Any:
    return JSONBody(service.list_documents(library_id, cursor, limit))


@router.get("/{document_id}", response_model=models.Document)
async def get_document(
    _consistent: ReadBarrier,
    library_id: str,
    document_id: str,
    service: ServiceDep,
    include_chunks: bool = False,
    include_embeddings: bool = False,
) -> Any:
    args = (library_id, document_id, include_chunks, include_embeddings)
    if include_chunks:  # a document may hold 10,000 chunks: a worker thread
        return JSONBody(await run_in_threadpool(service.get_document, *args))
    return JSONBody(await read_soon(service.get_document, *args))


@router.patch("/{document_id}", response_model=models.Document)
async def update_document(
    library_id: str,
    document_id: str,
    body: models.DocumentUpdate,
    service: ServiceDep,
    response: Response,
) -> Any:
    document, index = await service.update_document(library_id, document_id, body)
    mark_written(response, index)
    return document


@router.delete("/{document_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_document(library_id: str, document_id: str, service: ServiceDep) -> Response:
    index = await service.delete_document(library_id, document_id)
    response = Response(status_code=status.HTTP_204_NO_CONTENT)
    mark_written(response, index)
    return response


@router.post(
    "/{document_id}/chunks",
    status_code=status.HTTP_201_CREATED,
    response_model=models.ChunkList,
    openapi_extra=body_schema(models.ChunksCreate),
)
async def add_chunks(
    library_id: str,
    document_id: str,
    body: ChunksBody,
    service: ServiceDep,
) -> Any:
    chunks, index = await service.add_chunks(library_id, document_id, body)
    return written({"items": chunks}, index, status.HTTP_201_CREATED)


@router.get("/{document_id}/chunks", response_model=models.ChunkPage)
def list_chunks(
    _consistent: ReadBarrier,
    library_id: str,
    document_id: str,
    service: ServiceDep,
    cursor: Cursor = None,
    limit: Limit = 100,
    include_embeddings: bool = False,
) -> Any:
    return JSONBody(service.list_chunks(library_id, document_id, cursor, limit, include_embeddings))
