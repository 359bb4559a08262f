"""The progress summary a leader's appends carry: its text form, what a
follower refuses to read from it or keeps, and how the view is shown."""

from __future__ import annotations

import io
from types import SimpleNamespace
from typing import Any

import httpx
import pytest

from cluster.status import leader_progress
from node.cli_cluster import show
from replication.leader_view import (
    MAX_MEMBERS,
    LeaderView,
    MemberProgress,
    decode_view,
    encode_view,
)
from replication.raft import PeerState, Progress, Role
from replication.runner import RaftNode


def test_a_view_reads_back_as_written() -> None:
    view = LeaderView(
        9, 1042,
        (MemberProgress("n1", 1042, 0), MemberProgress("r-a.b_c", 17, None),
         MemberProgress("n3", None, 12)),
    )  # fmt: skip
    text = encode_view(view)
    assert text == "9 1042 n1:1042:0 r-a.b_c:17:- n3:-:12"
    assert decode_view(text) == view
    assert decode_view("1 5") == LeaderView(1, 5, ())


@pytest.mark.parametrize(
    "text",
    [
        "",
        "5",
        "1 x n1:1:0",
        "x 1 n1:1:0",
        "1 n1:1:0",
        "1 1 n1:1",
        "1 1 n1:1:0 ",
        "1 1  n1:1:0",
        "1 1 n 1:1:0",
        "1 1 n1:-1:0",
        "1 1 n1:1:0:9",
        "1 \u0661 n1:1:0",  # an Arabic-Indic digit: int() would take it
        "1 1 n1:\u0661:0",
        "1 " + "9" * 20,
        "1 1 " + "n" * 65 + ":1:0",
        "1 1 n1:" + "9" * 20 + ":0",
        "1 1" + " n1:1:0" * (MAX_MEMBERS + 1),
    ],
)
def test_anything_else_is_not_a_view(text: str) -> None:
    assert decode_view(text) is None


class _SteppingDown(dict[str, Progress]):
    """core.progress whose first read sees the loop depose the leader."""

    def __init__(self, core: Any, progress: dict[str, Progress]) -> None:
        super().__init__(progress)
        self.core = core

    def get(self, key: str, default: Any = None) -> Any:
        self.core.role, self.core.term, self.core.leader_id = Role.FOLLOWER, 8, "n2"
        self.clear()
        return super().get(key, default)


def _leader(progress: dict[str, Progress]) -> Any:
    core = SimpleNamespace(role=Role.LEADER, term=7, leader_id="n1", members=frozenset(
        {"n1", "n2", "n3"}), log=SimpleNamespace(last_index=lambda: 100))  # fmt: skip
    core.progress = progress
    node = SimpleNamespace(core=core, node_id="n1", last_contact={}, heard_view=None)
    node.leader_view = lambda seq=0: RaftNode.leader_view(node, seq)  # type: ignore[arg-type]
    node.leader_id, node.term = "n1", 7
    return node


def test_a_leader_deposed_while_its_view_is_read_shows_none() -> None:
    """/cluster reads the view off the loop: a step-down halfway through must
    not show every follower at match 0, labelled with the new term."""
    node = _leader({})
    node.core.progress = _SteppingDown(node.core, {"n2": Progress(101, 99), "n3": Progress(101)})
    assert node.leader_view() is None
    node.leader_id, node.term = "n2", 8
    assert leader_progress(node, 2.0) is None


def test_a_new_leader_does_not_know_a_silent_followers_match_yet() -> None:
    answered = Progress(101, 100, state=PeerState.REPLICATE)
    node = _leader({"n2": answered, "n3": Progress(101)})
    shown = leader_progress(node, 2.0)
    assert shown is not None and shown["term"] == 7 and shown["leader_id"] == "n1"
    lags = {m["id"]: (m["match_index"], m["lag"]) for m in shown["members"]}
    assert lags == {"n1": (100, 0), "n2": (100, 0), "n3": (None, None)}


def _follower() -> Any:
    core = SimpleNamespace(leader_id="n1", term=7)
    node = SimpleNamespace(core=core, heard_view=None, leader_id="n1", term=7)
    node.note = lambda *args: RaftNode.note_leader_view(node, *args)  # type: ignore[arg-type]
    node.leader_view = lambda seq=0: None
    return node


def test_a_follower_keeps_the_newest_summary_whatever_order_they_arrive_in() -> None:
    node = _follower()
    node.note("n1", 7, "5 100 n1:100:0 n2:90:30")
    node.note("n1", 7, "4 80 n1:80:0 n2:80:10")  # made earlier, arrived later
    assert node.heard_view[3].seq == 5
    node.note("n2", 7, "9 120 n1:1:0")  # not our leader
    node.note("n1", 6, "9 120 n1:1:0")  # not our term
    assert node.heard_view[3].seq == 5
    node.core.term = node.term = 8  # a new term of the same leader starts over
    node.note("n1", 8, "1 130 n1:130:0")
    assert node.heard_view[3].seq == 1
    shown = leader_progress(node, 2.0)
    assert shown is not None and shown["term"] == 8


def test_a_followers_contact_times_are_as_of_now() -> None:
    node = _follower()
    node.note("n1", 7, "5 100 n1:100:0 n2:90:300")
    sender, term, received, view = node.heard_view
    node.heard_view = (sender, term, received - 1.0, view)  # heard a second ago
    shown = leader_progress(node, 2.0)
    assert shown is not None and shown["age_seconds"] >= 1.0
    contact = {m["id"]: m["last_contact_seconds"] for m in shown["members"]}
    assert contact["n2"] >= 1.3 and contact["n1"] >= 1.0
    node.heard_view = (sender, term, received - 3.0, view)
    assert leader_progress(node, 2.0) is None  # the leader may be gone


def test_status_prints_the_lag_of_the_term_it_shows() -> None:
    views = {
        "7701": {"node_id": "n1", "role": "follower", "term": 7, "leader_id": "n3",
                 "members": [{"id": "n1", "url": "u1", "voter": True}], "progress": None},
        "7702": {"node_id": "n2", "role": "follower", "term": 6, "leader_id": "n2",
                 "progress": {"term": 6, "leader_id": "n2",
                              "members": [{"id": "n1", "lag": 5}]}},
    }  # fmt: skip

    def handle(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=views[str(request.url.port)])

    out = io.StringIO()
    with httpx.Client(transport=httpx.MockTransport(handle)) as http:
        show(http, ["http://127.0.0.1:7701", "http://127.0.0.1:7702"], out)
    row = next(line for line in out.getvalue().splitlines() if line.startswith("n1 "))
    assert " 5 " not in row and "?" in row, out.getvalue()
