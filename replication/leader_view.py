"""The leader's view of its followers' progress, carried to every follower.

Only the leader knows how far each member's log matches its own. So that
``GET /cluster`` on any node can show it, the leader puts a short summary
in a header of each append it sends (``X-Shoal-Leader-View``). A header
rather than a field of the Raft message: nodes that do not know it ignore
it, and the core, which decides safety, never sees it.

The text is ``<leader last index> <id>:<match index>:<ms since heard>...``
(``-`` for a member not heard from yet); node ids cannot hold a space or a
colon (see node.settings).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

HEADER = "X-Shoal-Leader-View"
HEADER_BYTES = HEADER.lower().encode()
MAX_MEMBERS = 256
_INDEX = re.compile(r"[0-9]{1,19}")
_ENTRY = re.compile(r"([A-Za-z0-9_.-]{1,64}):([0-9]{1,19}):([0-9]{1,12}|-)")


@dataclass(frozen=True, slots=True)
class MemberProgress:
    id: str
    match_index: int
    # Milliseconds since the leader last heard from it; None: never heard.
    heard_ms: int | None


@dataclass(frozen=True, slots=True)
class LeaderView:
    last_index: int
    members: tuple[MemberProgress, ...]


def encode_view(view: LeaderView) -> str:
    parts = [str(view.last_index)]
    for member in view.members:
        heard = "-" if member.heard_ms is None else str(member.heard_ms)
        parts.append(f"{member.id}:{member.match_index}:{heard}")
    return " ".join(parts)


def decode_view(text: str) -> LeaderView | None:
    """The view in ``text``; None when it is not one (it is only shown, so a
    malformed header costs the display, never the message it came with)."""
    words = text.split(" ")
    if _INDEX.fullmatch(words[0]) is None or len(words) > MAX_MEMBERS + 1:
        return None
    members = []
    for word in words[1:]:
        matched = _ENTRY.fullmatch(word)
        if matched is None:
            return None
        name, match_index, heard = matched.groups()
        members.append(MemberProgress(name, int(match_index), None if heard == "-" else int(heard)))
    return LeaderView(int(words[0]), tuple(members))
