"""Checking recorded client histories: linearizable registers, no phantoms.

A history is a list of :class:`Op` per key (a register): writes of unique
values and reads of what was seen, each with invoke and completion times on
one monotonic clock and an outcome. ``ok`` operations took effect; ``fail``
ones must not have (the server said so); ``unknown`` ones (timeouts, lost
connections) may or may not have.

:func:`check_register` searches for a linearization (Wing and Gong's
algorithm with Lowe's memoisation of (done set, value) states): an order of
the operations, consistent with real time, in which every read returns the
latest write. Unknown writes may be placed anywhere after their invocation,
or nowhere. The search is split by key (linearizability is local) and has a
step budget, reported rather than silently passed when it runs out.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Literal

Outcome = Literal["ok", "fail", "unknown"]


@dataclass(frozen=True)
class Op:
    key: str
    kind: Literal["write", "read"]
    value: str | None
    invoke: float
    complete: float
    outcome: Outcome


@dataclass(frozen=True)
class Verdict:
    ok: bool
    reason: str = ""
    exhausted: bool = False


def check_register(ops: list[Op], initial: str | None = None, budget: int = 500_000) -> Verdict:
    """Is this one register's history linearizable?"""
    reads = [op for op in ops if op.kind == "read" and op.outcome == "ok"]
    seen_by: dict[str | None, float] = {}
    for read in reads:
        seen_by[read.value] = min(seen_by.get(read.value, math.inf), read.complete)
    writes = []
    for op in ops:
        if op.kind != "write" or op.outcome == "fail":
            continue
        if op.outcome == "unknown":
            # No answer came back. Never read: it may as well not have
            # happened, so leave it out. Read: it happened, no later than the
            # first read that saw it completed.
            if op.value not in seen_by:
                continue
            op = Op(op.key, op.kind, op.value, op.invoke, seen_by[op.value], "ok")
        writes.append(op)
    candidates = writes + reads
    candidates.sort(key=lambda op: (op.invoke, op.complete))
    required = [op.outcome == "ok" for op in candidates]
    count = len(candidates)
    seen: set[tuple[int, str | None]] = set()
    steps = 0

    def enter(done: int, value: str | None) -> list[Any] | bool:
        """A search state's frame [done, value, horizon, next op to try];
        True when every required op is placed, False when already explored."""
        nonlocal steps
        if all(done >> i & 1 or not required[i] for i in range(count)):
            return True
        if (done, value) in seen:
            return False
        seen.add((done, value))
        steps += 1
        if steps > budget:
            raise _Exhausted
        # Only an operation invoked before every pending required one
        # completed can go next (real-time order).
        horizon = min(
            (candidates[i].complete for i in range(count) if not done >> i & 1 and required[i]),
            default=math.inf,
        )
        return [done, value, horizon, 0]

    def search(done: int, value: str | None) -> bool:
        """Depth first, on a stack of frames rather than Python's: a key's
        history may hold more operations than the interpreter nests calls
        (a flapping-partition drill once recorded over a thousand)."""
        first = enter(done, value)
        if not isinstance(first, list):
            return first
        stack = [first]
        while stack:
            frame = stack[-1]
            done, value, horizon, i = frame
            child: list[Any] | None = None
            while i < count:
                op = candidates[i]
                i += 1
                if done >> (i - 1) & 1:
                    continue
                if op.invoke > horizon:
                    i = count
                    break
                if op.kind == "read" and op.value != value:
                    continue
                opened = enter(done | 1 << (i - 1), value if op.kind == "read" else op.value)
                if opened is True:
                    return True
                if isinstance(opened, list):
                    child = opened
                    break
            frame[3] = i
            if child is None:
                stack.pop()
            else:
                stack.append(child)
        return False

    try:
        if search(0, initial):
            return Verdict(True)
    except _Exhausted:
        return Verdict(False, f"search budget of {budget} steps ran out", exhausted=True)
    return Verdict(False, _explain(candidates))


class _Exhausted(Exception):
    pass


def _explain(ops: list[Op]) -> str:
    shown = "; ".join(
        f"{op.kind} {op.value!r} [{op.invoke:.3f}, {op.complete:.3f}] {op.outcome}"
        for op in ops[:12]
    )
    return f"no order of these operations explains the reads: {shown}"


def check_history(ops: list[Op], budget: int = 500_000) -> dict[str, Verdict]:
    """Per key: linearizable, and no read ever saw a value whose write failed."""
    by_key: dict[str, list[Op]] = defaultdict(list)
    for op in ops:
        by_key[op.key].append(op)
    verdicts = {}
    for key, key_ops in by_key.items():
        failed = {op.value for op in key_ops if op.kind == "write" and op.outcome == "fail"}
        phantoms = [op for op in key_ops
                    if op.kind == "read" and op.outcome == "ok" and op.value in failed]  # fmt: skip
        if phantoms:
            verdicts[key] = Verdict(False, f"a read saw {phantoms[0].value!r}, whose write failed")
        else:
            verdicts[key] = check_register(key_ops, budget=budget)
    return verdicts
