"""``shoal backup`` and ``shoal restore``: a consistent snapshot to a file,
and a new data directory from one."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

if TYPE_CHECKING:  # the state machine loads only for these commands
    from node.backup import BackupHeader

SECRET_HEADER = "X-Shoal-Cluster-Secret"
PREFIX = "x-shoal-backup-"


def add_parsers(commands: Any) -> None:
    default_url = os.environ.get("SHOAL_URL", "http://127.0.0.1:7700")
    backup = commands.add_parser(
        "backup", help="write a consistent snapshot of the data, as of a committed index"
    )
    backup.add_argument("out", metavar="OUT", help="the backup file to write")
    backup.add_argument("--url", default=default_url,
                        help="node URLs, comma separated: the first to answer is used")  # fmt: skip
    backup.add_argument("--cluster-secret", help="the cluster's secret [SHOAL_CLUSTER_SECRET]")
    restore = commands.add_parser(
        "restore", help="make a data directory for a new cluster of one from a backup"
    )
    restore.add_argument("file", metavar="FILE", help="a file written by shoal backup")
    restore.add_argument("--data", required=True, help="the new data directory (absent or empty)")
    restore.add_argument("--node-id", default="n1", help="the new node's id (default n1)")


def run_backup(args: argparse.Namespace) -> int:
    from node.backup import BadBackup

    secret = args.cluster_secret or os.environ.get("SHOAL_CLUSTER_SECRET") or None
    headers = {SECRET_HEADER: secret} if secret else {}
    api_key = os.environ.get("SHOAL_API_KEY")
    if api_key:
        headers["X-API-Key"] = api_key
    errors = []
    for url in [u.strip().rstrip("/") for u in args.url.split(",") if u.strip()]:
        try:
            header = _download(url, headers, Path(args.out))
        except (httpx.HTTPError, OSError) as exc:
            errors.append(f"{url}: {exc}")
            continue
        except BadBackup as exc:
            print(f"shoal: {exc}", file=sys.stderr)  # noqa: T201
            return 1
        print(f"backup of {header.node_id} at entry {header.index} (term {header.term}): "  # noqa: T201
              f"{header.bytes} bytes, state digest {header.digest[:16]}..., "
              f"written to {args.out}")  # fmt: skip
        return 0
    print(f"shoal: no node gave a backup: {'; '.join(errors)}", file=sys.stderr)  # noqa: T201
    return 1


def _download(url: str, headers: dict[str, str], out: Path) -> BackupHeader:
    from node.backup import BackupHeader, BadBackup, write_backup

    with httpx.Client(timeout=httpx.Timeout(30.0, read=600.0)) as http, http.stream(
        "POST", url + "/admin/backup", headers=headers
    ) as response:
        if response.status_code != 200:
            response.read()
            try:
                detail = response.json().get("detail", response.text)
            except ValueError:
                detail = response.text
            raise BadBackup(f"{url} answered {response.status_code}: {detail}")
        given = response.headers
        header = BackupHeader(
            index=int(given[PREFIX + "index"]), term=int(given[PREFIX + "term"]),
            digest=given[PREFIX + "digest"], sha256=given[PREFIX + "sha256"],
            bytes=int(given[PREFIX + "bytes"]), cluster_id=given[PREFIX + "cluster"],
            node_id=given[PREFIX + "node"], created=given[PREFIX + "created"],
        )  # fmt: skip
        body: Iterator[bytes] = response.iter_bytes(1 << 20)
        write_backup(out, header, body)
        return header


def run_restore(args: argparse.Namespace) -> int:
    from node.backup import BadBackup, restore_backup

    try:
        header = restore_backup(Path(args.file), Path(args.data), args.node_id)
    except (BadBackup, OSError) as exc:
        print(f"shoal: {exc}", file=sys.stderr)  # noqa: T201
        return 1
    print(f"restored entry {header.index} of cluster {header.cluster_id} (state digest "  # noqa: T201
          f"{header.digest[:16]}...) into {args.data}; start it with: shoal serve --data "
          f"{args.data} --node-id {args.node_id}")  # fmt: skip
    return 0
