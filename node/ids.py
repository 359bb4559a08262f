"""Time-ordered identifiers (UUID version 7 layout, RFC 9562).

Ids are chosen by the leader before a command is logged, so every replica
stores the same ones. Within one process they increase strictly, but leaders'
clocks differ: listings are ordered by the log, not by these ids.
"""

from __future__ import annotations

import os
import threading
import time
import uuid

_lock = threading.Lock()
_last = 0


def new_id() -> str:
    global _last
    with _lock:
        millis = time.time_ns() // 1_000_000
        # 48 bits of milliseconds, then 12 bits of a counter (rand_a), so ids
        # made in the same millisecond still increase.
        candidate = (millis << 12) | (int.from_bytes(os.urandom(2), "big") & 0x3FF)
        _last = candidate if candidate > _last else _last + 1
        stamp = _last
    rand_b = int.from_bytes(os.urandom(8), "big") & ((1 << 62) - 1)
    value = (stamp >> 12) << 80 | 0x7 << 76 | (stamp & 0xFFF) << 64 | 0b10 << 62 | rand_b
    return str(uuid.UUID(int=value))


def new_ids(count: int) -> list[str]:
    return [new_id() for _ in range(count)]
