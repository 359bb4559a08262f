"""Terms and indexes a Raft message may carry.

Found by the peer fuzzer (tests/cluster/test_peer_fuzz.py): a vote request
with term 2^63 - 1 was taken, the node's next campaign made its term 2^63,
and every message it sent from then on was refused by its peers' decoders
(and its own). A term no real cluster reaches is refused at the door."""

from __future__ import annotations

import random
from pathlib import Path

import msgpack
import pytest

from replication.messages import (
    MAX_TERM,
    AppendRequest,
    MalformedMessage,
    VoteRequest,
    VoteResponse,
    decode,
    encode,
)
from replication.raft import RaftConfig, RaftCore, Role
from wal import EntryKind, LogEntry
from wal.memory_store import MemoryLogStore


def _vote(term: int, last_term: int = 0) -> bytes:
    return bytes(msgpack.packb({"kind": "vote", "term": term, "sender": "n2", "last_index": 0,
                                "last_term": last_term, "pre_vote": False, "rpc": 1}))  # fmt: skip


def test_a_term_a_campaign_could_push_out_of_range_is_refused() -> None:
    assert decode(_vote(MAX_TERM)).term == MAX_TERM
    assert decode(encode(VoteResponse(MAX_TERM, "n1", False, False, 1))).term == MAX_TERM
    for term in (2**63 - 1, MAX_TERM + 1):
        with pytest.raises(MalformedMessage, match="term"):
            decode(_vote(term))
    with pytest.raises(MalformedMessage, match="last_term"):
        decode(_vote(5, last_term=2**63 - 1))


@pytest.mark.parametrize(
    ("index", "term"), [(-1, 1), (1, -1), (2**63, 1), (1, 2**63 - 1), (True, 1), (1, False)]
)
def test_entries_with_impossible_indexes_or_terms_are_refused(index: int, term: int) -> None:
    good = LogEntry(1, 1, EntryKind.NOOP, b"")
    wire = AppendRequest(1, "n2", 0, 0, (good,), 0, 1)
    body = msgpack.unpackb(encode(wire), raw=False)
    body["entries"][0][:2] = [index, term]
    with pytest.raises(MalformedMessage):
        decode(bytes(msgpack.packb(body)))


def test_a_node_at_the_highest_term_campaigns_no_more() -> None:
    """Its next term would be refused by every peer: it stays a follower,
    sends no vote request, and keeps its term, however long it waits."""
    core = RaftCore(RaftConfig("n1", ("n2", "n3")), MemoryLogStore(), MAX_TERM, None, 0, 0.0,
                    random.Random(1))  # fmt: skip
    sent = []
    for step in range(1, 200):
        core.tick(step * 0.5)
        sent += [message for _, message in core.take_ready().messages]
    assert core.term == MAX_TERM and core.role is Role.FOLLOWER
    assert not [message for message in sent if isinstance(message, VoteRequest)]


def test_a_node_whose_stored_term_is_out_of_reach_refuses_to_start(tmp_path: Path) -> None:
    """Its peers would refuse every message it sent (a node of an older
    version could have taken such a term): it says so instead of starting."""
    from node.engine import Engine
    from node.settings import Settings
    from wal import CorruptStableState, StableStore

    engine = Engine(Settings(data_dir=tmp_path, node_id="n1"))
    engine.open()
    engine.close()
    stable = StableStore(tmp_path / "term")
    stable.load()
    stable.save(MAX_TERM + 1, None)
    with pytest.raises(CorruptStableState, match="beyond the highest"):
        Engine(Settings(data_dir=tmp_path, node_id="n1")).open()
