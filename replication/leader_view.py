"""The leader's view of its followers' progress, carried to every follower.

Only the leader knows how far each member's log matches its own. So that
``GET /cluster`` on any node can show it, the leader puts a short summary
in a header of each append it sends (``X-Shoal-Leader-View``). A header
rather than a field of the Raft message: nodes that do not know it ignore
it, and the core, which decides safety, never sees it.

The text is ``<seq> <leader last index> <id>:<match index>:<ms since heard>...``
with ``-`` for what the leader does not know yet (a new leader learns each
match index from the first answer); node ids cannot hold a space or a
colon (see node.settings). ``seq`` grows with each summary a leader makes:
appends travel on several connections and may arrive out of order, so a
follower keeps the newest.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

HEADER = "X-Shoal-Leader-View"
HEADER_BYTES = HEADER.lower().encode()
MAX_MEMBERS = 256
_INDEX = re.compile(r"[0-9]{1,19}")
_ENTRY = re.compile(r"([A-Za-z0-9_.-]{1,64}):([0-9]{1,19}|-):([0-9]{1,12}|-)")


@dataclass(frozen=True, slots=True)
class MemberProgress:
    id: str
    match_index: int | None  # None: not known yet
    # Milliseconds since the leader last heard from it; None: never heard.
    heard_ms: int | None


@dataclass(frozen=True, slots=True)
class LeaderView:
    seq: int
    last_index: int
    members: tuple[MemberProgress, ...]


def encode_view(view: LeaderView) -> str:
    parts = [str(view.seq), str(view.last_index)]
    for member in view.members:
        heard = "-" if member.heard_ms is None else str(member.heard_ms)
        match = "-" if member.match_index is None else str(member.match_index)
        parts.append(f"{member.id}:{match}:{heard}")
    return " ".join(parts)


def decode_view(text: str) -> LeaderView | None:
    """The view in ``text``; None when it is not one (it is only shown, so a
    malformed header costs the display, never the message it came with)."""
    words = text.split(" ")
    if len(words) < 2 or len(words) > MAX_MEMBERS + 2:
        return None
    if _INDEX.fullmatch(words[0]) is None or _INDEX.fullmatch(words[1]) is None:
        return None
    members = []
    for word in words[2:]:
        matched = _ENTRY.fullmatch(word)
        if matched is None:
            return None
        name, match_index, heard = matched.groups()
        members.append(MemberProgress(
            name,
            None if match_index == "-" else int(match_index),
            None if heard == "-" else int(heard),
        ))  # fmt: skip
    return LeaderView(int(words[0]), int(words[1]), tuple(members))
