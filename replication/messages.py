"""Raft messages and their msgpack form (no pickle on the wire).

Every message carries the sender's term. Requests carry an ``rpc`` number
so a response can be matched to what it answers; a stale, duplicated or
reordered response is recognised and ignored by the core.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, ClassVar, get_type_hints

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
    # The leader asked the candidate to take over (leadership transfer): the
    # voters' "a live leader exists" refusal does not apply.
    transfer: bool = False


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
class TimeoutNow(Message):
    """The leader hands over: the receiver, as up to date as the leader,
    starts an election at once (Raft thesis §3.10)."""

    kind: ClassVar[str] = "timeout_now"
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
class SnapshotProgress(Message):
    """Local event: the follower ``sender`` took another chunk of the
    snapshot transfer ``rpc``."""

    kind: ClassVar[str] = "snapshot_progress"
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
        TimeoutNow,
    )  # fmt: skip
}

# Left out of the bytes while they hold their default, so nodes that do not
# know them yet still read every message that does not use them.
_OMITTED_AT_DEFAULT = {"transfer": False}


def encode(message: Message) -> bytes:
    body: dict[str, Any] = {"kind": message.kind}
    for item in fields(message):
        value = getattr(message, item.name)
        if item.name == "entries":
            value = [entry.to_wire() for entry in value]
        elif item.name in _OMITTED_AT_DEFAULT and value == _OMITTED_AT_DEFAULT[item.name]:
            continue
        body[item.name] = value
    return msgpack.packb(body, use_bin_type=True)


class MalformedMessage(ValueError):
    """Bytes that are not a well-formed Raft message."""


# The highest term a message may carry. Every other number travels below
# 2^63; a term is kept further below, so that a node that took the highest
# term (a garbled or hostile message) cannot campaign its way out of the
# range its peers decode: a node at MAX_TERM campaigns no more (raft.py).
# An honest cluster would need 2^62 elections to get there.
MAX_TERM = 1 << 62
WIRE_LIMIT = 1 << 63
# How far beyond a node's own term a message may be: one term per election,
# no cluster gets 2^32 elections ahead of one of its members. A message that
# does is refused, so a single garbled or hostile one cannot take a cluster
# to MAX_TERM (where no node campaigns any more).
MAX_TERM_STEP = 1 << 32


_FIELD_TYPES: dict[type[Message], dict[str, type]] = {}


def _field_types(cls: type[Message]) -> dict[str, type]:
    known = _FIELD_TYPES.get(cls)
    if known is None:
        hints = get_type_hints(cls)
        known = {item.name: hints[item.name] for item in fields(cls)}
        _FIELD_TYPES[cls] = known
    return known


def _check_field(name: str, value: object, expected: type) -> None:
    if expected is int:
        limit = MAX_TERM + 1 if name == "term" or name.endswith("_term") else WIRE_LIMIT
        ok = type(value) is int and 0 <= value < limit
    elif expected is bool or expected is str:
        ok = isinstance(value, expected)
    else:  # the entries tuple, checked entry by entry in LogEntry.from_wire
        ok = isinstance(value, list)
    if not ok:
        raise MalformedMessage(f"field {name!r} has the wrong type or range: {value!r:.40}")


def decode(data: bytes) -> Message:
    """Parse and type-check a message; raises :class:`MalformedMessage`."""
    try:
        body = msgpack.unpackb(data, raw=False, strict_map_key=False)
    except Exception as exc:  # msgpack raises several unrelated types
        raise MalformedMessage(f"not msgpack: {exc}") from None
    if not isinstance(body, dict) or body.get("kind") not in _KINDS:
        raise MalformedMessage("not a raft message")
    cls = _KINDS[body.pop("kind")]
    expected = _field_types(cls)
    for name, default in _OMITTED_AT_DEFAULT.items():
        if name in expected:
            body.setdefault(name, default)
    if set(body) != set(expected):
        raise MalformedMessage(f"a {cls.kind} message needs exactly the fields {sorted(expected)}")
    for name, value in body.items():
        _check_field(name, value, expected[name])
    if "entries" in body:
        try:
            body["entries"] = tuple(LogEntry.from_wire(entry) for entry in body["entries"])
        except ValueError as exc:
            raise MalformedMessage(str(exc)) from None
        for entry in body["entries"]:
            if not (type(entry.index) is int and 0 < entry.index < WIRE_LIMIT
                    and type(entry.term) is int and 0 <= entry.term <= MAX_TERM):  # fmt: skip
                raise MalformedMessage(
                    f"a log entry's index or term is out of range: {entry.index!r:.25}, "
                    f"{entry.term!r:.25}"
                )
    return cls(**body)
