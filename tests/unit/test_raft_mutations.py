"""Each Raft rule, broken on purpose, must be caught by the tests.

A mutant is the core's source with one rule changed, loaded as a module of
its own that shares the real enums and messages; the named tests then run
against it and at least one must fail. A mutant that passes means a rule
the tests do not hold, so this file keeps the rule tests honest.
"""

from __future__ import annotations

import inspect
import sys
import types
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest

import replication.raft as raft
import tests.raft_sim as raft_sim
import tests.unit.test_raft as rule_tests
import tests.unit.test_raft_rules as new_rule_tests

# (name, text in replication/raft.py, what it becomes, tests that must catch it)
MUTATIONS: list[tuple[str, str, str, list[Callable[[], None]]]] = [
    (
        "commit by counting entries of older terms",
        "if candidate > self.commit_index and self.log.term_at(candidate) == self.term:",
        "if candidate > self.commit_index:",
        [rule_tests.test_old_term_entries_are_not_committed_by_counting],
    ),
    (
        "leader counts its own unsynced entries",
        "matches.append(self.synced_index)",
        "matches.append(self.log.last_index())",
        [rule_tests.test_leader_counts_itself_only_once_synced],
    ),
    (
        "follower commits past what the request confirmed",
        "commit = min(request.commit, match)",
        "commit = request.commit",
        [rule_tests.test_follower_commit_never_passes_what_it_holds],
    ),
    (
        "follower commit index goes back on a late append",
        "        if commit > self.commit_index:\n            self.commit_index = commit",
        "        if request.commit > self.commit_index:\n            self.commit_index = commit",
        [new_rule_tests.test_follower_commit_index_never_goes_back_on_a_late_append],
    ),
    (
        "pre-vote grant does not echo the term asked about",
        "term = request.term if granted else self.term",
        "term = self.term",
        [new_rule_tests.test_pre_vote_grant_echoes_the_term_asked_about],
    ),
    (
        "pre-vote grants of any round are counted",
        "and response.term == self.term + 1):  # fmt: skip",
        "):  # fmt: skip",
        [new_rule_tests.test_pre_vote_grant_from_an_earlier_round_is_not_counted],
    ),
    (
        "a stale rejection lowers the match",
        "elif sent_prev < progress.match_index:",
        "elif False:",
        [new_rule_tests.test_stale_rejection_does_not_lower_the_match],
    ),
    (
        "a lost probe falls back to the match index",
        "            progress.inflight.clear()\n\n    @staticmethod",
        "            self._become_probe(progress)\n\n    @staticmethod",
        [new_rule_tests.test_new_leader_does_not_send_a_snapshot_after_a_lost_probe],
    ),
    (
        "follower installs a snapshot it already holds",
        "if request.last_index <= self.commit_index:\n            return SnapshotResponse",
        "if False:\n            return SnapshotResponse",
        [
            new_rule_tests.test_follower_ignores_a_snapshot_it_already_holds,
            lambda: rule_tests.test_random_faults_with_snapshots_compaction_and_disk_faults(100),
        ],
    ),
    (
        "snapshot progress does not count as contact",
        "                progress.snapshot_seen = now\n                progress.last_ack = now",
        "                progress.snapshot_seen = now",
        [new_rule_tests.test_check_quorum_hears_a_follower_that_is_taking_a_snapshot],
    ),
    (
        "a transfer making progress is still given up on a timer",
        "                progress.snapshot_seen = now\n                progress.last_ack = now",
        "                progress.last_ack = now",
        [new_rule_tests.test_snapshot_transfer_is_not_restarted_while_it_makes_progress],
    ),
    (
        "failed transfers are retried at once",
        "if not progress.snapshot_rpc and now >= progress.snapshot_retry_at:",
        "if not progress.snapshot_rpc:",
        [new_rule_tests.test_stalled_or_failed_transfer_backs_off_then_retries],
    ),
    (
        "nothing is sent to a follower between two transfers",
        "                elif idle and (force or due):\n                    self._send_heartbeat(",
        "                elif False:\n                    self._send_heartbeat(",
        [new_rule_tests.test_follower_is_heard_during_a_back_off],
    ),
    (
        "a node that lost acknowledged entries votes at once",
        "        if self.waits_for_leader_after is not None:\n            return VoteResponse(",
        "        if False:\n            return VoteResponse(",
        [new_rule_tests.test_node_that_lost_its_tail_waits_for_a_newer_leader],
    ),
    (
        "an answer to an abandoned transfer moves the follower on",
        "if progress.state is not PeerState.SNAPSHOT or response.rpc != progress.snapshot_rpc:",
        "if False:",
        [new_rule_tests.test_answer_to_an_abandoned_transfer_is_ignored],
    ),
    (
        "an installed snapshot always throws the log away",
        "        kept = not (\n",
        "        kept = False and not (\n",
        [new_rule_tests.test_follower_installs_a_newer_snapshot_and_keeps_the_log_after_it],
    ),
    (
        "a snapshot is installed over committed entries",
        "        if last_index <= self.commit_index:\n            raise SafetyViolation(",
        "        if False:\n            raise SafetyViolation(",
        [new_rule_tests.test_installing_a_snapshot_over_committed_entries_is_refused],
    ),
]


def _mutant(original: str, replacement: str) -> types.ModuleType:
    source = inspect.getsource(raft)
    assert source.count(original) == 1, f"the rule text is not in raft.py once: {original!r}"
    module = types.ModuleType("replication.raft_mutant")
    sys.modules[module.__name__] = module  # dataclasses look their module up
    try:
        code = compile(source.replace(original, replacement), "raft_mutant.py", "exec")
        exec(code, module.__dict__)
    finally:
        del sys.modules[module.__name__]
    # Share the real types, so tests comparing roles and states still work.
    for name in ("Role", "PeerState", "Progress", "Ready", "RaftConfig", "NotLeader",
                 "SafetyViolation"):  # fmt: skip
        setattr(module, name, getattr(raft, name))
    return module


@contextmanager
def _installed(mutant: types.ModuleType) -> Iterator[None]:
    targets = [raft_sim, rule_tests, new_rule_tests]
    saved = [target.RaftCore for target in targets]
    try:
        for target in targets:
            target.RaftCore = mutant.RaftCore  # type: ignore[attr-defined]
        yield
    finally:
        for target, core in zip(targets, saved, strict=True):
            target.RaftCore = core  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("original", "replacement", "checks"),
    [pytest.param(o, r, c, id=name) for name, o, r, c in MUTATIONS],
)
def test_mutant_is_caught(
    original: str, replacement: str, checks: list[Callable[[], None]]
) -> None:
    for check in checks:  # each passes on the real core
        check()
    caught = []
    with _installed(_mutant(original, replacement)):
        for check in checks:
            try:
                check()
            except (AssertionError, raft.SafetyViolation, pytest.fail.Exception):
                caught.append(check)
    assert caught, "the mutant passed every test meant to catch it"
