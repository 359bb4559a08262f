"""The progress summary a leader's appends carry: its text form and what a
follower refuses to read from it."""

from __future__ import annotations

import pytest

from replication.leader_view import (
    MAX_MEMBERS,
    LeaderView,
    MemberProgress,
    decode_view,
    encode_view,
)


def test_a_view_reads_back_as_written() -> None:
    view = LeaderView(
        1042,
        (MemberProgress("n1", 1042, 0), MemberProgress("r-a.b_c", 17, None),
         MemberProgress("n3", 1040, 12)),
    )  # fmt: skip
    text = encode_view(view)
    assert text == "1042 n1:1042:0 r-a.b_c:17:- n3:1040:12"
    assert decode_view(text) == view
    assert decode_view("5") == LeaderView(5, ())


@pytest.mark.parametrize(
    "text",
    [
        "",
        "x n1:1:0",
        "1 n1:1",
        "1 n1:1:0 ",
        "1  n1:1:0",
        "1 n 1:1:0",
        "1 n1:-1:0",
        "1 n1:1:0:9",
        "\u0661 n1:1:0",  # an Arabic-Indic digit: int() would take it
        "1 n1:\u0661:0",
        "9" * 20,
        "1 " + "n" * 65 + ":1:0",
        "1 n1:" + "9" * 20 + ":0",
        "1" + " n1:1:0" * (MAX_MEMBERS + 1),
    ],
)
def test_anything_else_is_not_a_view(text: str) -> None:
    assert decode_view(text) is None
