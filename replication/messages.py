"""Raft messages and their msgpack form (no pickle on the wire).

Every message carries the sender's term. Requests carry an ``rpc`` number
so a response can be matched to what it answers; a stale, duplicated or
reordered response is recognised and ignored by the core.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, ClassVar

import msgpack

from wal import LogEntry


@dataclass(frozen=True, slots=True)
class Message:
    kind: ClassVar[str] = ""
    term: int
    sender: str


@dataclass(frozen=True, slots=True)
class VoteRequest(Message):
    kind: ClassVar[str] = "vote"
    last_index: int
    last_term: int
    pre_vote: bool
    rpc: int = 0


@dataclass(frozen=True, slots=True)
class VoteResponse(Message):
    kind: ClassVar[str] = "vote_resp"
    granted: bool
    pre_vote: bool
    rpc: int = 0


@dataclass(frozen=True, slots=True)
class AppendRequest(Message):
    kind: ClassVar[str] = "append"
    prev_index: int
    prev_term: int
    entries: tuple[LogEntry, ...]
    commit: int
    rpc: int = 0


@dataclass(frozen=True, slots=True)
class AppendResponse(Message):
    kind: ClassVar[str] = "append_resp"
    success: bool
    # On success: the last index the follower now holds from this request.
    # On failure: where the leader should try next (a conflict hint).
    match_index: int
    conflict_index: int = 0
    conflict_term: int = 0
    rpc: int = 0


@dataclass(frozen=True, slots=True)
class SnapshotRequest(Message):
    """Announces that a snapshot up to ``last_index`` has been installed on the
    follower by the transport (the bytes travel outside the core)."""

    kind: ClassVar[str] = "snapshot"
    last_index: int
    last_term: int
    rpc: int = 0


@dataclass(frozen=True, slots=True)
class SnapshotResponse(Message):
    kind: ClassVar[str] = "snapshot_resp"
    match_index: int
    rpc: int = 0


@dataclass(frozen=True, slots=True)
class Unreachable(Message):
    """Local event: an RPC to ``sender`` failed (timeout, refused, dropped)."""

    kind: ClassVar[str] = "unreachable"
    rpc: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


_KINDS: dict[str, type[Message]] = {
    cls.kind: cls
    for cls in (
        VoteRequest,
        VoteResponse,
        AppendRequest,
        AppendResponse,
        SnapshotRequest,
        SnapshotResponse,
    )  # fmt: skip
}


def encode(message: Message) -> bytes:
    body: dict[str, Any] = {"kind": message.kind}
    for item in fields(message):
        value = getattr(message, item.name)
        if item.name == "entries":
            value = [entry.to_wire() for entry in value]
        body[item.name] = value
    return msgpack.packb(body, use_bin_type=True)


def decode(data: bytes) -> Message:
    body = msgpack.unpackb(data, raw=False, strict_map_key=False)
    if not isinstance(body, dict) or body.get("kind") not in _KINDS:
        raise ValueError("not a raft message")
    cls = _KINDS[body.pop("kind")]
    if "entries" in body:
        body["entries"] = tuple(LogEntry.from_wire(entry) for entry in body["entries"])
    return cls(**body)
