"""Admission before any work: a request rate per client, and a cap on the
writes a node holds at once.

Every write waits on the Raft loop for its entry to commit; a client that
sends them without waiting for answers would pile up futures, bodies and
log appends without bound, and with them the time every heartbeat waits.
A node refuses what it cannot take with 429 and ``Retry-After`` (the SDK
waits that long and tries again), so it sheds load before it slows.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from dataclasses import dataclass

from node.errors import TooManyRequests

MAX_CLIENTS = 10_000  # buckets kept; the least recently seen go first


@dataclass
class _Bucket:
    tokens: float
    at: float


class Admission:
    """``rate`` requests a second per client (0: no limit), with bursts of
    up to ``burst``; at most ``max_writes`` writes in flight on the node."""

    def __init__(self, rate: float, burst: float, max_writes: int) -> None:
        self.rate = rate
        self.burst = max(burst, 1.0)
        self.max_writes = max_writes
        self.writes = 0
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()

    def admit(self, client: str, write: bool, now: float | None = None) -> None:
        """Count the request in, or raise TooManyRequests. An admitted write
        must be let out with :meth:`write_done`."""
        if self.rate > 0:
            self._take(client, time.monotonic() if now is None else now)
        if write:
            if self.writes >= self.max_writes:
                raise TooManyRequests(
                    f"this node holds {self.writes} writes in flight, as many as it takes "
                    f"({self.max_writes}); wait for answers before sending more"
                )
            self.writes += 1

    def write_done(self) -> None:
        self.writes -= 1

    def _take(self, client: str, now: float) -> None:
        bucket = self._buckets.pop(client, None)
        if bucket is None:
            bucket = _Bucket(self.burst, now)
        bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.at) * self.rate)
        bucket.at = now
        self._buckets[client] = bucket  # now the most recent
        while len(self._buckets) > MAX_CLIENTS:
            self._buckets.popitem(last=False)
        if bucket.tokens < 1.0:
            wait = math.ceil((1.0 - bucket.tokens) / self.rate)
            raise TooManyRequests(
                f"this client sent more than {self.rate:g} requests a second "
                f"(bursts of {self.burst:g}); retry after {wait} s",
                retry_after=wait,
            )
        bucket.tokens -= 1.0
