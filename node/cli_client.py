"""``shoal status``, ``shoal import`` and ``shoal query``: the SDK from a terminal."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from node.cli_table import print_table

if TYPE_CHECKING:  # the SDK loads only for the commands that use it, not for `serve`
    from shoal_client import Client

TEXT_SUFFIXES = (".txt", ".md", ".rst")


def _urls(args: argparse.Namespace) -> list[str]:
    return [url.strip() for url in args.url.split(",") if url.strip()]


def add_parsers(commands: Any) -> None:
    default_url = os.environ.get("SHOAL_URL", "http://127.0.0.1:7700")
    status = commands.add_parser("status", help="a table of the cluster's nodes")
    status.add_argument("--url", default=default_url, help="node URLs, comma separated")
    status.add_argument("--wait", type=float, default=0.0, metavar="SECONDS",
                        help="wait up to this long for a leader and every node ready "
                        "(a cluster that was just started)")  # fmt: skip

    load = commands.add_parser("import", help="add documents from JSONL or a folder of text")
    load.add_argument("path", help="a .jsonl file (one document per line) or a folder")
    load.add_argument("--library", required=True, help="library id")
    load.add_argument("--url", default=default_url, help="node URLs, comma separated")
    load.add_argument("--concurrency", type=int, default=4)
    load.add_argument("--batch", type=int, default=32, help="documents per progress step")

    query = commands.add_parser("query", help="the chunks nearest to a text")
    query.add_argument("text")
    query.add_argument("--library", required=True, help="library id")
    query.add_argument("--url", default=default_url, help="node URLs, comma separated")
    query.add_argument("-k", type=int, default=5)
    query.add_argument("--filters", help="a filter as JSON (see docs/api.md)")


def client_from_args(args: argparse.Namespace) -> Client:
    """A client for ``--url`` (comma-separated) with ``SHOAL_API_KEY``."""
    from shoal_client import Client

    return Client(_urls(args), api_key=os.environ.get("SHOAL_API_KEY") or None)


def run(args: argparse.Namespace) -> int:
    from shoal_client import ShoalError

    try:
        with client_from_args(args) as client:
            if args.command == "status":
                return status(client, sys.stdout, args.wait, len(_urls(args)))
            if args.command == "import":
                return import_documents(client, args.library, Path(args.path),
                                        args.concurrency, args.batch, sys.stderr)  # fmt: skip
            filters = json.loads(args.filters) if args.filters else None
            return query(client, args.library, args.text, args.k, filters, sys.stdout)
    except (ShoalError, ValueError, OSError) as exc:
        print(f"shoal: {exc}", file=sys.stderr)  # noqa: T201
        return 1


def status(client: Client, out: TextIO, wait: float = 0.0, expected: int = 1) -> int:
    """The table of nodes; with ``wait``, first wait (bounded) until a leader
    is known and at least ``expected`` nodes answer ready."""
    deadline = time.monotonic() + wait
    while True:
        nodes = sorted(client.cluster_status(), key=lambda node: node.node_id)
        leader = next((node for node in nodes if node.role == "leader"), None)
        settled = (
            leader is not None and len(nodes) >= expected and all(node.ready for node in nodes)
        )
        if settled or time.monotonic() >= deadline:
            break
        time.sleep(0.5)
    if not nodes:
        print("no node answered", file=out)  # noqa: T201
        return 1
    lag = {peer.id: peer.lag for peer in leader.peers} if leader else {}
    rows = [("NODE", "ROLE", "TERM", "COMMIT", "APPLIED", "LAG", "READY", "URL")]
    for node in nodes:
        behind = "-" if node.role == "leader" else str(lag.get(node.node_id, "?"))
        rows.append((node.node_id, node.role, str(node.term), str(node.commit_index),
                     str(node.applied_index), behind, "yes" if node.ready else "no",
                     node.url))  # fmt: skip
    print_table(rows, out)
    return 0


def read_documents(path: Path) -> Iterator[dict[str, Any]]:
    """JSONL lines as documents, or one document per text file in a folder."""
    if path.is_dir():
        for file in sorted(path.rglob("*")):
            if file.is_file() and file.suffix.lower() in TEXT_SUFFIXES:
                metadata = {"title": file.stem, "source_url": file.resolve().as_uri()}
                yield {"text": file.read_text(errors="replace"), "metadata": metadata}
        return
    with path.open() as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                document = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}:{number} is not JSON: {exc}") from None
            if not isinstance(document, dict) or ("text" not in document
                                                  and "chunks" not in document):  # fmt: skip
                raise ValueError(f"{path}:{number}: a document needs 'text' or 'chunks'")
            yield document


def import_documents(client: Client, library_id: str, path: Path, concurrency: int, batch: int,
                     progress: TextIO) -> int:  # fmt: skip
    documents = list(read_documents(path))
    if not documents:
        print(f"shoal: nothing to import in {path}", file=progress)  # noqa: T201
        return 1
    done = 0
    for start in range(0, len(documents), batch):
        done += len(client.upsert_documents(library_id, documents[start : start + batch],
                                            concurrency))  # fmt: skip
        _bar(done, len(documents), progress)
    print(file=progress)  # noqa: T201
    return 0


def _bar(done: int, total: int, out: TextIO, width: int = 30) -> None:
    filled = int(width * done / total)
    print(f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{total} documents",  # noqa: T201
          end="", file=out, flush=True)  # fmt: skip


def query(client: Client, library_id: str, text: str, k: int, filters: dict[str, Any] | None,
          out: TextIO) -> int:  # fmt: skip
    result = client.query(library_id, query_text=text, k=k, filters=filters)
    for rank, hit in enumerate(result.results, start=1):
        snippet = (hit.text or "").replace("\n", " ")[:100]
        print(f"{rank:>2}. {hit.score:.4f}  {hit.chunk_id}  {snippet}", file=out)  # noqa: T201
    print(f"({len(result.results)} results from {result.served_by}, "  # noqa: T201
          f"{result.took_ms:.1f} ms)", file=out)  # fmt: skip
    return 0
