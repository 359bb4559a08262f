"""Request-scoped access to the node's parts, as annotated dependencies."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Query, Request, Response

from node.engine import Engine
from node.responses import INDEX_HEADER
from node.service import Service


# async on purpose: FastAPI runs a plain `def` dependency on a worker thread,
# a hop that cost more than the rest of a /health request.
async def _service(request: Request) -> Service:
    service: Service = request.app.state.service
    return service


async def _engine(request: Request) -> Engine:
    engine: Engine = request.app.state.engine
    return engine


ServiceDep = Annotated[Service, Depends(_service)]
EngineDep = Annotated[Engine, Depends(_engine)]
Limit = Annotated[int, Query(ge=1, le=1000, description="Items per page")]
Cursor = Annotated[str | None, Query(max_length=100, description="next_cursor of the last page")]


def mark_written(response: Response, index: int) -> None:
    """Every write response names the log index that holds the write."""
    response.headers[INDEX_HEADER] = str(index)
