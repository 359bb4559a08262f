"""``shoal worker``: runs the question workflow and its activities."""

from __future__ import annotations

import asyncio
import logging
import signal

from temporalio.client import Client
from temporalio.worker import Worker

from temporal.activities import AskActivities, WorkerConfig
from temporal.workflows import AskWorkflow

log = logging.getLogger("shoal.worker")


async def run_worker(config: WorkerConfig, address: str, namespace: str, task_queue: str) -> None:
    client = await Client.connect(address, namespace=namespace)
    activities = AskActivities(config)
    worker = Worker(client, task_queue=task_queue, workflows=[AskWorkflow],
                    activities=activities.all())  # fmt: skip
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    log.info("worker on %s (queue %s) asking %s", address, task_queue, ", ".join(config.nodes))
    async with worker:
        await stop.wait()
    await activities.close()
