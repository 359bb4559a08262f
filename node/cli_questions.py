"""``shoal worker`` and ``shoal ask``."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the SDK loads only for `ask`, not for `serve`
    from shoal_client import Answer

from node.cli_client import client_from_args

ENV_NODES = "SHOAL_NODES"


def add_parsers(commands: Any) -> None:
    worker = commands.add_parser("worker", help="run the Temporal worker that answers questions")
    worker.add_argument("--temporal-address", default=os.environ.get("SHOAL_TEMPORAL_ADDRESS",
                                                                     "localhost:7233"))  # fmt: skip
    worker.add_argument("--namespace", default=os.environ.get("SHOAL_TEMPORAL_NAMESPACE",
                                                              "default"))  # fmt: skip
    worker.add_argument("--task-queue", default=os.environ.get("SHOAL_TEMPORAL_TASK_QUEUE",
                                                               "shoal-ask"))  # fmt: skip
    worker.add_argument("--nodes", default=os.environ.get(ENV_NODES, "http://127.0.0.1:7700"),
                        help="Shoal node URLs, comma separated [SHOAL_NODES]")  # fmt: skip
    worker.add_argument("--log-level", default="info",
                        choices=["debug", "info", "warning", "error"])  # fmt: skip

    ask = commands.add_parser("ask", help="ask a library a question and wait for the answer")
    ask.add_argument("question")
    ask.add_argument("--library", required=True, help="library id")
    ask.add_argument("--url", default=os.environ.get("SHOAL_URL", "http://127.0.0.1:7700"),
                     help="node URLs, comma separated [SHOAL_URL]")  # fmt: skip
    ask.add_argument("--k", type=int, default=5, help="sources to answer from")
    ask.add_argument("--timeout", type=float, default=120.0)


def run_worker(args: argparse.Namespace) -> int:
    from temporal.activities import WorkerConfig
    from temporal.worker import run_worker as run

    logging.basicConfig(level=args.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")  # fmt: skip
    config = WorkerConfig(
        nodes=[url.strip().rstrip("/") for url in args.nodes.split(",") if url.strip()],
        api_key=os.environ.get("SHOAL_API_KEY") or None,
        cohere_api_key=os.environ.get("SHOAL_COHERE_API_KEY")
        or os.environ.get("COHERE_API_KEY")
        or None,
        cohere_base_url=os.environ.get("SHOAL_COHERE_BASE_URL") or None,
        cohere_embed_model=os.environ.get("SHOAL_COHERE_EMBED_MODEL", "embed-english-v3.0"),
    )
    asyncio.run(run(config, args.temporal_address, args.namespace, args.task_queue))
    return 0


def run_ask(args: argparse.Namespace) -> int:
    from shoal_client import ShoalError

    try:
        with client_from_args(args) as client:
            answer = client.ask(args.library, args.question, k=args.k, timeout=args.timeout)
    except (ShoalError, ValueError) as exc:
        print(f"shoal: {exc}", file=sys.stderr)  # noqa: T201
        return 1
    if answer.status == "running":
        print(f"shoal: no answer within {args.timeout:g}s (workflow {answer.workflow_id})",  # noqa: T201
              file=sys.stderr)  # fmt: skip
        return 1
    return _print_answer(answer)


def _print_answer(answer: Answer) -> int:
    if answer.status != "completed":
        print(f"shoal: the question ended {answer.status}: {answer.error or ''}",  # noqa: T201
              file=sys.stderr)  # fmt: skip
        return 1
    label = " (extractive: quoted from the sources)" if answer.mode == "extractive" else ""
    print((answer.answer or "") + label)  # noqa: T201
    print(f"\nsources (retrieved from {answer.served_by}):")  # noqa: T201
    for n, source in enumerate(answer.sources, start=1):
        print(f"  [{n}] {source.chunk_id}  {source.text[:100]!r}")  # noqa: T201
    return 0
