"""Questions answered from a library: POST /libraries/{id}/ask, GET/cancel /queries/{id}."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, status
from fastapi.responses import JSONResponse
from pydantic import Field

from node.deps import ServiceDep
from node.models import Integer, Strict
from node.questions import WORKFLOW_ID, Questions

router = APIRouter(tags=["questions"])


class AskRequest(Strict):
    question: str = Field(min_length=1, max_length=4_000)
    k: Integer = Field(default=5, ge=1, le=50)
    workflow_id: str | None = Field(
        default=None,
        pattern=WORKFLOW_ID.pattern,
        description="Your own id for the question (makes a retried ask idempotent)",
    )


def _questions(request: Request) -> Questions:
    questions: Questions = request.app.state.questions
    return questions


@router.post("/libraries/{library_id}/ask", status_code=status.HTTP_202_ACCEPTED)
async def ask(library_id: str, body: AskRequest, request: Request, service: ServiceDep) -> Any:
    service.get_library(library_id)  # 404 now rather than inside the workflow
    service.check_text_queries(library_id)  # and 422 for a question it cannot answer
    workflow_id = await _questions(request).start(library_id, body.question, body.k,
                                                  body.workflow_id)  # fmt: skip
    return JSONResponse(
        {"workflow_id": workflow_id, "status_url": f"/queries/{workflow_id}"},
        status_code=status.HTTP_202_ACCEPTED,
        headers={"Location": f"/queries/{workflow_id}"},
    )


@router.get("/queries/{workflow_id}")
async def question_status(workflow_id: str, request: Request) -> dict[str, Any]:
    """status (running, completed, cancelled, failed), step, and when done the
    answer, its mode, citations, sources and the node that served retrieval."""
    return await _questions(request).status(workflow_id)


@router.post("/queries/{workflow_id}/cancel", status_code=status.HTTP_202_ACCEPTED)
async def cancel_question(workflow_id: str, request: Request) -> dict[str, str]:
    await _questions(request).cancel(workflow_id)
    return {"workflow_id": workflow_id, "status": "cancelling"}
