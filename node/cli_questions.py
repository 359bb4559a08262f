"""``shoal worker`` and ``shoal ask``."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
import time
from typing import Any

import httpx

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
    ask.add_argument("--url", default=os.environ.get("SHOAL_URL", "http://127.0.0.1:7700"))
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
    headers = {"X-API-Key": os.environ["SHOAL_API_KEY"]} if os.environ.get("SHOAL_API_KEY") else {}
    with httpx.Client(base_url=args.url, headers=headers, timeout=30,
                      follow_redirects=True) as client:  # fmt: skip
        started = client.post(f"/libraries/{args.library}/ask",
                              json={"question": args.question, "k": args.k})  # fmt: skip
        if started.status_code != 202:
            print(f"shoal: {_detail(started)}", file=sys.stderr)  # noqa: T201
            return 1
        workflow_id = started.json()["workflow_id"]
        deadline = time.monotonic() + args.timeout
        while time.monotonic() < deadline:
            view = client.get(f"/queries/{workflow_id}").json()
            if view.get("status") != "running":
                return _print_answer(view)
            time.sleep(0.3)
    print(f"shoal: no answer within {args.timeout:g}s (workflow {workflow_id})",  # noqa: T201
          file=sys.stderr)  # fmt: skip
    return 1


def _detail(response: httpx.Response) -> str:
    try:
        return str(response.json().get("detail", response.text))
    except ValueError:
        return response.text


def _print_answer(view: dict[str, Any]) -> int:
    if view.get("status") != "completed":
        print(f"shoal: the question ended {view.get('status')}: {view.get('error', '')}",  # noqa: T201
              file=sys.stderr)  # fmt: skip
        return 1
    label = " (extractive: quoted from the sources)" if view.get("mode") == "extractive" else ""
    print(view["answer"] + label)  # noqa: T201
    print(f"\nsources (retrieved from {view.get('served_by')}):")  # noqa: T201
    for n, source in enumerate(view.get("sources", []), start=1):
        print(f"  [{n}] {source['chunk_id']}  {source['text'][:100]!r}")  # noqa: T201
    return 0
