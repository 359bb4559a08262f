"""Tables for the command line: columns padded to their widest cell."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TextIO


def print_table(rows: Sequence[tuple[str, ...]], out: TextIO) -> None:
    """The first row is the heading."""
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)),  # noqa: T201
              file=out)  # fmt: skip
