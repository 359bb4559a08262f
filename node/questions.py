"""Questions through Temporal: start the workflow, report on it, cancel it.

The node only starts and inspects workflows; ``shoal worker`` runs them. With
no Temporal address configured, asking answers 503 and says what is missing.
The Temporal SDK is imported on the first question, not at start: it is a
fifth of a node's import time, and a restarting node should lead again fast.
"""

from __future__ import annotations

import asyncio
import dataclasses
import re
import uuid
from typing import TYPE_CHECKING, Any

from node.errors import Conflict, InvalidRequest, NotFound, Unavailable
from node.settings import Settings
from temporal.models import WORKFLOW, AskInput, AskResult

if TYPE_CHECKING:
    from temporalio.client import Client

WORKFLOW_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,200}$")
CONNECT_SECONDS = 5.0


class Questions:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._client: Client | None = None
        self._lock = asyncio.Lock()

    async def _connect(self) -> Client:
        address = self.settings.temporal_address
        if address is None:
            raise Unavailable(
                "questions need a Temporal server: start the node with --temporal-address "
                "and run `shoal worker`"
            )
        from temporalio.client import Client
        from temporalio.service import RPCError

        async with self._lock:
            if self._client is None:
                try:
                    self._client = await asyncio.wait_for(
                        Client.connect(address, namespace=self.settings.temporal_namespace),
                        CONNECT_SECONDS,
                    )
                except (TimeoutError, RuntimeError, RPCError) as exc:
                    raise Unavailable(f"the Temporal server at {address} did not answer: "
                                      f"{exc}") from None  # fmt: skip
            return self._client

    async def start(self, library_id: str, question: str, k: int, workflow_id: str | None) -> str:
        if workflow_id is not None and not WORKFLOW_ID.match(workflow_id):
            raise InvalidRequest("workflow_id may hold letters, digits and _ . : - (1 to 200)")
        from temporalio.exceptions import WorkflowAlreadyStartedError

        client = await self._connect()
        workflow_id = workflow_id or f"ask-{uuid.uuid4()}"
        try:
            await client.start_workflow(
                WORKFLOW, AskInput(library_id, question, k), id=workflow_id,
                task_queue=self.settings.temporal_task_queue,
            )  # fmt: skip
        except WorkflowAlreadyStartedError:
            raise Conflict(f"a question with workflow id {workflow_id} already exists") from None
        return workflow_id

    async def status(self, workflow_id: str) -> dict[str, Any]:
        from temporalio.client import WorkflowExecutionStatus, WorkflowFailureError
        from temporalio.service import RPCError, RPCStatusCode

        client = await self._connect()
        handle = client.get_workflow_handle(workflow_id, result_type=AskResult)
        try:
            description = await handle.describe()
        except RPCError as exc:
            if exc.status == RPCStatusCode.NOT_FOUND:
                raise NotFound(f"no question with workflow id {workflow_id}") from None
            raise
        state = description.status
        view: dict[str, Any] = {"workflow_id": workflow_id}
        if state == WorkflowExecutionStatus.RUNNING:
            view.update(status="running", step=await handle.query("step", result_type=str))
        elif state == WorkflowExecutionStatus.COMPLETED:
            result = await handle.result()
            view.update(dataclasses.asdict(result))
        elif state == WorkflowExecutionStatus.FAILED:
            try:
                await handle.result()
            except WorkflowFailureError as exc:
                cause = exc.cause
                view.update(status="failed", error=str(getattr(cause, "message", cause)))
        else:
            view.update(status=state.name.lower() if state else "unknown")
        return view

    async def cancel(self, workflow_id: str) -> None:
        from temporalio.service import RPCError, RPCStatusCode

        client = await self._connect()
        try:
            await client.get_workflow_handle(workflow_id).signal("cancel")
        except RPCError as exc:
            if exc.status == RPCStatusCode.NOT_FOUND:
                raise NotFound(f"no running question with workflow id {workflow_id}") from None
            raise
