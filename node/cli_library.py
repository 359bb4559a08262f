"""``shoal library create|list|delete``: libraries from a terminal, through the SDK."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any, TextIO, get_args

from node.cli_client import client_from_args
from node.cli_table import print_table
from node.models import IndexType, Metric


def add_parsers(commands: Any) -> None:
    default_url = os.environ.get("SHOAL_URL", "http://127.0.0.1:7700")
    library = commands.add_parser("library", help="create, list or delete libraries")
    actions = library.add_subparsers(dest="action", required=True)
    create = actions.add_parser("create", help="make a library; prints its id")
    create.add_argument("name")
    create.add_argument("--dimension", type=int,
                        help="vector width (left out: fixed by the first vector)")  # fmt: skip
    create.add_argument("--metric", choices=get_args(Metric), default="cosine")
    create.add_argument("--index-type", choices=get_args(IndexType), default="brute_force")
    create.add_argument("--index-params", metavar="JSON",
                        help='index parameters as JSON, e.g. \'{"M": 16}\'')  # fmt: skip
    create.add_argument("--description")
    listing = actions.add_parser("list", help="a table of the libraries")
    delete = actions.add_parser("delete", help="delete a library and everything in it")
    delete.add_argument("library_id", metavar="ID")
    for action in (create, listing, delete):
        action.add_argument("--url", default=default_url, help="node URLs, comma separated")


def run(args: argparse.Namespace) -> int:
    from shoal_client import ShoalError

    try:
        params = json.loads(args.index_params) if getattr(args, "index_params", None) else None
        if params is not None and not isinstance(params, dict):
            raise ValueError("--index-params must be a JSON object")
        with client_from_args(args) as client:
            if args.action == "create":
                made = client.create_library(args.name, description=args.description,
                                             dimension=args.dimension, metric=args.metric,
                                             index_type=args.index_type,
                                             index_params=params)  # fmt: skip
                print(made.id)  # noqa: T201
                return 0
            if args.action == "delete":
                client.delete_library(args.library_id)
                print(f"deleted {args.library_id}")  # noqa: T201
                return 0
            return list_libraries(client.list_libraries(), sys.stdout)
    except (ShoalError, ValueError, OSError) as exc:
        print(f"shoal: {exc}", file=sys.stderr)  # noqa: T201
        return 1


def list_libraries(libraries: Any, out: TextIO) -> int:
    rows = [("ID", "NAME", "INDEX", "METRIC", "DIMENSION", "DOCUMENTS", "CHUNKS")]
    for library in libraries:
        rows.append((library.id, library.name, library.index_type, library.metric,
                     str(library.dimension or "-"), str(library.document_count),
                     str(library.chunk_count)))  # fmt: skip
    print_table(rows, out)
    return 0
