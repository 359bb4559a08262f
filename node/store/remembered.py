"""The outcomes of recent keyed writes, bounded by count and by bytes.

Which keys are remembered is replicated state: a retry of a forgotten key
applies again, and the digest covers the memory. So every replica must evict
the same keys, and sizes are counted from encoded bytes, never from what the
Python objects happen to take. A remembered answer is kept msgpack-encoded,
which makes the count honest too: what is counted is what is held, plus a
fixed allowance per entry.

An answer whose encoding is larger than ``OUTCOME_BYTES_KEPT`` is not kept:
the key is remembered with an ``AlreadyApplied`` outcome, so a retry still
does not apply twice and is told why it gets no copy of the first answer.

The applier is the only writer; other threads (the digest behind
``/cluster``, the service's check before it proposes) read through the lock.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import msgpack

from node.idempotency import OUTCOME_BYTES_KEPT, REMEMBERED, REMEMBERED_BYTES

# What an entry costs beyond its key, answer and detail: the ordered dict's
# slot and link, the record, the headers of its strings and bytes (about 300
# bytes on CPython 3.11, rounded up).
ENTRY_BYTES = 400


@dataclass(frozen=True, slots=True)
class RememberedOutcome:
    index: int
    error: str | None
    detail: str | None
    packed_value: bytes | None
    # Of the request that carried the key (None: logged before fingerprints).
    fingerprint: str | None = None

    @classmethod
    def of(
        cls, index: int, error: str | None, detail: str | None, value: Any,
        fingerprint: str | None = None,
    ) -> RememberedOutcome:  # fmt: skip
        if value is None:
            return cls(index, error, detail, None, fingerprint)
        packed = msgpack.packb(value, use_bin_type=True)
        if len(packed) <= OUTCOME_BYTES_KEPT:
            return cls(index, error, detail, packed, fingerprint)
        return cls(index, "AlreadyApplied", _not_kept(index, len(packed)), None, fingerprint)

    def answers(self, fingerprint: str | None) -> bool:
        """Whether a request with ``fingerprint`` is a retry of this one."""
        return self.fingerprint is None or fingerprint is None or fingerprint == self.fingerprint

    def value(self) -> Any:
        if self.packed_value is None:
            return None
        return msgpack.unpackb(self.packed_value, raw=False, strict_map_key=False)

    def size(self, key: str) -> int:
        return (
            ENTRY_BYTES
            + len(key.encode())
            + len(self.packed_value or b"")
            + len((self.detail or "").encode())
            + len(self.fingerprint or "")
        )

    def record(self, key: str) -> list[Any]:
        """The snapshot (and digest) form; five fields when there is no
        fingerprint, as snapshots written before fingerprints have."""
        fields = [key, self.index, self.error, self.detail, self.packed_value]
        return fields if self.fingerprint is None else [*fields, self.fingerprint]


def _not_kept(index: int, size: int) -> str:
    return (
        f"a write with this Idempotency-Key was already applied, at log index {index}; its "
        f"answer ({size} bytes encoded) was too large to keep, so this retry changed nothing "
        "and cannot repeat it: read the result instead"
    )


class RememberedRequests:
    """Idempotency-Key -> outcome, oldest first."""

    def __init__(self) -> None:
        self._outcomes: OrderedDict[str, RememberedOutcome] = OrderedDict()
        self._lock = threading.Lock()
        self.bytes = 0

    def get(self, key: str) -> RememberedOutcome | None:
        with self._lock:
            return self._outcomes.get(key)

    def remember(self, key: str, outcome: RememberedOutcome) -> None:
        """Remember ``outcome``, forgetting the oldest ones beyond the bounds."""
        with self._lock:
            previous = self._outcomes.pop(key, None)
            if previous is not None:
                self.bytes -= previous.size(key)
            self._outcomes[key] = outcome
            self.bytes += outcome.size(key)
            while len(self._outcomes) > REMEMBERED or self.bytes > REMEMBERED_BYTES:
                oldest_key, oldest = self._outcomes.popitem(last=False)
                self.bytes -= oldest.size(oldest_key)

    def records(self) -> list[tuple[str, RememberedOutcome]]:
        """A copy, oldest first, safe to walk while the applier goes on."""
        with self._lock:
            return list(self._outcomes.items())

    def __len__(self) -> int:
        return len(self._outcomes)

    def __contains__(self, key: object) -> bool:
        return key in self._outcomes
