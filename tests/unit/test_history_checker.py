"""The history checker itself: histories that must pass and must fail."""

from __future__ import annotations

import math
import random

from tests.history import Op, check_history, check_register


def w(value: str, start: float, end: float, outcome: str = "ok") -> Op:
    return Op("k", "write", value, start, end, outcome)  # type: ignore[arg-type]


def r(value: str | None, start: float, end: float, outcome: str = "ok") -> Op:
    return Op("k", "read", value, start, end, outcome)  # type: ignore[arg-type]


# ------------------------------------------------------------- must pass
def test_sequential_history() -> None:
    assert check_register([w("a", 0, 1), r("a", 2, 3), w("b", 4, 5), r("b", 6, 7)]).ok


def test_read_concurrent_with_a_write_may_see_either() -> None:
    assert check_register([w("a", 0, 1), w("b", 2, 5), r("a", 3, 4)]).ok
    assert check_register([w("a", 0, 1), w("b", 2, 5), r("b", 3, 4)]).ok


def test_concurrent_writes_in_either_order() -> None:
    ops = [w("a", 0, 10), w("b", 1, 9), r("a", 11, 12), r("a", 13, 14)]
    assert check_register(ops).ok


def test_unknown_writes_may_or_may_not_apply() -> None:
    assert check_register([w("a", 0, 1), w("b", 2, 3, "unknown"), r("a", 5, 6)]).ok
    assert check_register([w("a", 0, 1), w("b", 2, 3, "unknown"), r("b", 50, 51)]).ok
    # an unknown write may even land long after its client gave up
    assert check_register([w("a", 0, 1), w("b", 2, 3, "unknown"), r("a", 5, 6), r("b", 8, 9)]).ok


def test_reads_of_the_initial_value() -> None:
    assert check_register([r(None, 0, 1), w("a", 2, 3), r("a", 4, 5)]).ok


def test_failed_reads_and_failed_writes_carry_no_constraint() -> None:
    assert check_register(
        [w("a", 0, 1), w("b", 2, 3, "fail"), r("x", 4, 5, "fail"), r("a", 6, 7)]
    ).ok


# ------------------------------------------------------------- must fail
def test_stale_read_after_a_completed_write() -> None:
    verdict = check_register([w("a", 0, 1), w("b", 2, 3), r("a", 4, 5)])
    assert not verdict.ok and "no order" in verdict.reason


def test_lost_acknowledged_write() -> None:
    assert not check_register([w("a", 0, 1), r(None, 2, 3)]).ok


def test_value_never_written() -> None:
    assert not check_register([w("a", 0, 1), r("z", 2, 3)]).ok


def test_reads_going_backwards() -> None:
    ops = [w("a", 0, 1), w("b", 2, 10), r("b", 3, 4), r("a", 5, 6)]
    assert not check_register(ops).ok


def test_phantom_of_a_failed_write() -> None:
    verdicts = check_history([w("a", 0, 1), w("b", 2, 3, "fail"), r("b", 4, 5)])
    assert not verdicts["k"].ok and "failed" in verdicts["k"].reason


def test_keys_are_checked_apart() -> None:
    ops = [
        Op("x", "write", "1", 0, 1, "ok"),
        Op("y", "write", "2", 0, 1, "ok"),
        Op("x", "read", "1", 2, 3, "ok"),
        Op("y", "read", "1", 2, 3, "ok"),
    ]
    verdicts = check_history(ops)
    assert verdicts["x"].ok and not verdicts["y"].ok


# --------------------------------------------------------------- budget
def test_the_budget_is_reported_not_passed() -> None:
    ops = [w(f"v{i}", 0, 100) for i in range(16)] + [r("nope", 101, 102)]
    verdict = check_register(ops, budget=50)
    assert not verdict.ok and verdict.exhausted


def test_random_sequential_histories_pass() -> None:
    rng = random.Random(7)
    clock, value, ops = 0.0, None, []
    for n in range(200):
        start = clock
        clock += rng.uniform(0.1, 1)
        if rng.random() < 0.5:
            value = f"v{n}"
            ops.append(w(value, start, clock))
        else:
            ops.append(r(value, start, clock))
        clock += 0.01
    assert check_register(ops).ok
    ops.append(r("v0" if value != "v0" else "v1", clock + 1, clock + 2))
    assert not check_register(ops).ok


def test_unknown_window_is_open_ended() -> None:
    op = w("a", 0, 1, "unknown")
    assert check_register([op, r("a", math.inf - 1, math.inf)]).ok


def test_a_history_longer_than_python_nests_calls() -> None:
    """Found in CI: a flapping-partition drill recorded over a thousand
    operations on one key, and the recursive search hit Python's recursion
    limit. The search keeps its own stack now."""
    ops = []
    for n in range(1500):
        ops += [w(f"v{n}", 4 * n, 4 * n + 1), r(f"v{n}", 4 * n + 2, 4 * n + 3)]
    assert check_register(ops).ok
    ops[-1] = r("v3", 6000, 6001)  # a stale read at the very end
    verdict = check_register(ops)
    assert not verdict.ok and not verdict.exhausted
