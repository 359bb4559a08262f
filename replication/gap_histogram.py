"""A fixed-bucket histogram of gaps, cheap enough for the Raft loop.

Two are kept per node: how long a follower went between messages from its
leader (an election starts when that passes the election timeout), and how
late the Raft loop's ticks ran (anything holding the event loop or the GIL
shows up there first).
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field

BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.15, 0.2, 0.3, 0.45, 0.6, 1.0, 2.0, 5.0)


@dataclass
class GapHistogram:
    bounds: tuple[float, ...] = BUCKETS
    counts: list[int] = field(default_factory=lambda: [0] * (len(BUCKETS) + 1))
    total: float = 0.0
    samples: int = 0
    largest: float = 0.0

    def observe(self, seconds: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, seconds)] += 1
        self.total += seconds
        self.samples += 1
        self.largest = max(self.largest, seconds)

    def cumulative(self) -> list[tuple[str, int]]:
        """(upper bound, samples at or below it), Prometheus style, +Inf last."""
        running, out = 0, []
        for bound, count in zip((*map(str, self.bounds), "+Inf"), self.counts, strict=True):
            running += count
            out.append((bound, running))
        return out
