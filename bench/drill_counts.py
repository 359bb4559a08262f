"""Run the fault drills several times and tally what they saw.

    python bench/drill_counts.py [--rounds 3] [MODULE ...]

Each drill's history passes the linearizability check (no acknowledged
write lost, none applied twice, no stale linearizable read), one leader per
term and equal digests, or the drill fails; the table counts the runs that
passed, the operations they made, and the runs that failed.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DRILLS = [
    "tests/cluster/test_netns_drills.py",
    "tests/cluster/test_power_loss.py",
    "tests/cluster/test_failstop.py",
    "tests/cluster/test_clock_drills.py",
    "tests/cluster/test_snapshots.py",
]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("modules", nargs="*", default=DRILLS)
    args = parser.parse_args()
    report = Path(tempfile.mkdtemp()) / "drills.jsonl"
    failures: dict[str, int] = defaultdict(int)
    for round_ in range(args.rounds):
        result = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rf",
             *args.modules],
            cwd=REPO, env={**os.environ, "SHOAL_DRILL_REPORT": str(report)},
            capture_output=True, text=True,
        )  # fmt: skip
        for line in result.stdout.splitlines():
            if line.startswith("FAILED "):
                failures[line.split()[1].split(" ")[0]] += 1
        if result.returncode:
            kept = report.with_name(f"round-{round_ + 1}.log")
            kept.write_text(result.stdout + result.stderr)
            print(f"round {round_ + 1} had failures; pytest's output is in {kept}")
        print(f"round {round_ + 1}: {result.stdout.strip().splitlines()[-1]}", flush=True)
    runs: dict[str, int] = defaultdict(int)
    totals: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for line in report.read_text().splitlines() if report.exists() else []:
        record = json.loads(line)
        runs[record["drill"]] += 1
        for key, value in record["counts"].items():
            totals[record["drill"]][key] += value
    print()
    print(f"command: python bench/drill_counts.py --rounds {args.rounds}")
    print()
    print(
        "| drill | passed runs | acknowledged writes | failed writes | unknown writes "
        "| linearizable reads | failed runs (lost, duplicated, stale or diverged) |"
    )
    print("|---|---|---|---|---|---|---|")
    for drill in sorted(set(runs) | set(failures)):
        counts = totals[drill]
        print(f"| {drill.split('::')[-1]} | {runs[drill]} | {counts['write-ok']} "
              f"| {counts['write-fail']} | {counts['write-unknown']} | {counts['read-ok']} "
              f"| {failures[drill]} |")  # fmt: skip


if __name__ == "__main__":
    main()
