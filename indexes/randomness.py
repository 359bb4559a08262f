"""Counter-based random numbers: the n-th draw for a seed is a pure function.

Replicas must draw the same numbers from the same seed on any machine and
any numpy version, and an index must be able to resume drawing after a
restore; a hash of (seed, counter) gives both without stored generator state.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

U64 = npt.NDArray[np.uint64]


def splitmix64(values: U64) -> U64:
    """SplitMix64's finaliser: a bijective scramble of 64-bit integers."""
    with np.errstate(over="ignore"):
        z = values + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        mixed: U64 = z ^ (z >> np.uint64(31))
        return mixed


def uniform(seed: int, first: int, count: int) -> npt.NDArray[np.float64]:
    """Draws ``first .. first+count-1`` for ``seed``, uniform in (0, 1)."""
    counters = np.arange(first, first + count, dtype=np.uint64)
    mixed = splitmix64(counters ^ splitmix64(np.full(1, seed, dtype=np.uint64)))
    result: npt.NDArray[np.float64] = ((mixed >> np.uint64(11)).astype(np.float64) + 0.5) / float(
        1 << 53
    )
    return result
