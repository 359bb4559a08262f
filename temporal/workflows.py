"""The question workflow: five activities, a cancel signal, a step query."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from temporal.models import (
        WORKFLOW,
        Answer,
        AnswerInput,
        AskInput,
        AskResult,
        EmbedInput,
        Hit,
        Prepared,
        RerankInput,
        Retrieved,
        RetrieveInput,
    )

RETRY = RetryPolicy(
    initial_interval=timedelta(milliseconds=500),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=5),
    maximum_attempts=5,
    non_retryable_error_types=["LibraryNotFound", "InvalidQuestion"],
)
TIMEOUTS = {
    "preprocess": timedelta(seconds=10),
    "embed": timedelta(seconds=30),
    "retrieve": timedelta(seconds=30),
    "rerank": timedelta(seconds=30),
    "answer": timedelta(seconds=60),
}


class _Cancelled(Exception):
    pass


@workflow.defn(name=WORKFLOW)
class AskWorkflow:
    def __init__(self) -> None:
        self._step = "queued"
        self._cancelled = False

    @workflow.run
    async def run(self, request: AskInput) -> AskResult:
        try:
            prepared: Prepared = await self._run("preprocess", request, Prepared)
            vector: list[float] = await self._run(
                "embed",
                EmbedInput(prepared.question, prepared.embedding_model, prepared.dimension),
                list[float],
            )
            route_key = workflow.info().workflow_id
            retrieved: Retrieved = await self._run(
                "retrieve", RetrieveInput(request.library_id, vector, request.k, route_key),
                Retrieved,
            )  # fmt: skip
            ranked: list[Hit] = await self._run(
                "rerank", RerankInput(prepared.question, retrieved.hits, request.k), list[Hit]
            )
            answer: Answer = await self._run(
                "answer", AnswerInput(prepared.question, ranked), Answer
            )
        except _Cancelled:
            return AskResult(status="cancelled", step=self._step)
        self._step = "done"
        return AskResult(
            status="completed", step="done", answer=answer.text, mode=answer.mode,
            citations=answer.citations, sources=ranked, served_by=retrieved.served_by,
            attempts=retrieved.attempts,
        )  # fmt: skip

    async def _run(self, step: str, argument: Any, result_type: type[Any] | Any) -> Any:
        """One activity, abandoned at once if a cancel signal arrives meanwhile."""
        self._step = step
        if self._cancelled:
            raise _Cancelled
        activity = workflow.start_activity(
            step, argument, result_type=result_type, start_to_close_timeout=TIMEOUTS[step],
            retry_policy=RETRY, cancellation_type=workflow.ActivityCancellationType.TRY_CANCEL,
        )  # fmt: skip
        cancelled = asyncio.ensure_future(workflow.wait_condition(lambda: self._cancelled))
        done, _ = await workflow.wait([activity, cancelled], return_when=asyncio.FIRST_COMPLETED)
        if activity in done:
            cancelled.cancel()
            return activity.result()
        activity.cancel()
        raise _Cancelled

    @workflow.signal
    def cancel(self) -> None:
        self._cancelled = True

    @workflow.query
    def step(self) -> str:
        return self._step
