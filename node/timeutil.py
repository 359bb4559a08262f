"""Timestamps: integers of microseconds since the Unix epoch, UTC.

The wire format is ISO 8601 with a ``Z``; dates without a time mean midnight
UTC and naive datetimes are taken as UTC. Stored instants lie between
:data:`EARLIEST` and :data:`LATEST` (years 1 to 9999 in UTC), the instants a
datetime can show; requests are checked with :func:`check_storable`.
"""

from __future__ import annotations

import functools
import time
from datetime import UTC, date, datetime, timedelta

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
EARLIEST = datetime.min.replace(tzinfo=UTC)
LATEST = datetime.max.replace(tzinfo=UTC)


def now_us() -> int:
    return time.time_ns() // 1000


@functools.lru_cache(maxsize=1 << 16)  # the chunks of a document share one stamp
def to_iso(us: int) -> str:
    """Exact to the microsecond. Never raises: views are built while entries
    apply, so an instant outside the storable range (written before requests
    were checked) shows as the nearest end of it."""
    shown = min(max(us, _EARLIEST_US), _LATEST_US)
    moment = _EPOCH + timedelta(microseconds=shown)
    return moment.isoformat(timespec="microseconds").replace("+00:00", "Z")


def datetime_to_us(moment: datetime) -> int:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    delta = moment - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


_EARLIEST_US = datetime_to_us(EARLIEST)
_LATEST_US = datetime_to_us(LATEST)
_STORABLE = "between 0001-01-01T00:00:00Z and 9999-12-31T23:59:59.999999Z"


def check_storable(moment: datetime) -> datetime:
    """``moment`` unchanged when its UTC instant lies in years 1 to 9999;
    otherwise ValueError with a sentence."""
    if not _EARLIEST_US <= datetime_to_us(moment) <= _LATEST_US:
        raise ValueError(f"must be {_STORABLE} once converted to UTC")
    return moment


def parse_instant(value: object) -> int:
    """Microseconds for an ISO 8601 date or datetime string (or a datetime).

    Raises ValueError with a sentence naming the problem.
    """
    if isinstance(value, datetime):
        return datetime_to_us(value)
    if isinstance(value, date):
        return datetime_to_us(datetime(value.year, value.month, value.day))
    if not isinstance(value, str):
        raise ValueError(f"expected an ISO 8601 date or datetime string, got {value!r}")
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        if len(text) == 10:
            parsed_date = date.fromisoformat(text)
            return datetime_to_us(datetime(parsed_date.year, parsed_date.month, parsed_date.day))
        return datetime_to_us(datetime.fromisoformat(text))
    except ValueError:
        raise ValueError(f"{value!r} is not an ISO 8601 date or datetime") from None
