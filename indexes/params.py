"""Checks for index and search parameters: strict types, stated ranges.

Parameters arrive as JSON, so a float such as ``200.5`` (or ``200.0``), a
bool or a string where an integer is meant is refused, never coerced. The
index constructors and ``search`` use these checks themselves, so checking a
request by building the index applies exactly the rule every replica applies
when it builds the same index from the log.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Collection, Mapping
from typing import Any


class InvalidParameter(ValueError):
    """A parameter an index cannot use; the message is a sentence naming it."""


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def integer(name: str, value: object, low: int, high: int) -> int:
    """``value`` as an int when it is an integer in ``low..high`` (bools are not)."""
    if (
        isinstance(value, bool)
        or not isinstance(value, numbers.Integral)
        or not low <= int(value) <= high
    ):
        raise InvalidParameter(
            f"{name} must be an integer from {low} to {high}, got {_shown(value)}"
        )
    return int(value)


def number(name: str, value: object, low: float, high: float, *, above_low: bool = False) -> float:
    """``value`` as a float when it is a finite number in ``[low, high]``
    (``(low, high]`` with ``above_low``)."""
    as_float = math.nan
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        as_float = float(value)
    above = as_float > low if above_low else as_float >= low
    if not (math.isfinite(as_float) and above and as_float <= high):
        interval = f"{'(' if above_low else '['}{low:g}, {high:g}]"
        raise InvalidParameter(f"{name} must be a number in {interval}, got {_shown(value)}")
    return as_float


def only(what: str, params: Mapping[str, Any], known: Collection[str]) -> None:
    """Refuse parameter names ``what`` (e.g. "hnsw search") does not take."""
    unknown = sorted(set(params) - set(known))
    if not unknown:
        return
    if not known:
        raise InvalidParameter(f"{what} takes no parameters, got {unknown}")
    raise InvalidParameter(f"{what} takes only {', '.join(known)}; got {unknown}")
