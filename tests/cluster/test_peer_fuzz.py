"""Fuzzing the node-to-node endpoints with the cluster secret.

A real node process whose two peers exist only in its member list: messages
"from" them reach the Raft core, which must answer each one with a problem
(400 for what does not parse, 403 for who is not a member, 409, 503) or a
well-formed msgpack answer. Never a 500, never a dead loop: afterwards the
node still answers at once and takes part in the cluster's messages. The
messages are random bytes, random msgpack, and Raft messages with extreme
or mistyped fields, entries included (whose payloads may be any bytes).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from replication.messages import _KINDS, MAX_TERM, MalformedMessage, _field_types, decode
from tests.cluster_harness import SECRET
from tests.harness import NodeProcess, free_port

pytestmark = pytest.mark.cluster

MEMBERS = ["n2", "n3"]
ANSWERS = {200, 400, 403, 409, 503}


@pytest.fixture(scope="module")
def lone_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    """n1 of a three-voter cluster whose n2 and n3 never start."""
    root: Path = tmp_path_factory.mktemp("fuzz")
    port = free_port()
    peers = ",".join([f"n1=http://127.0.0.1:{port}",
                      f"n2=http://127.0.0.1:{free_port()}",
                      f"n3=http://127.0.0.1:{free_port()}"])  # fmt: skip
    node = NodeProcess(root / "n1", "--peers", peers, node_id="n1",
                       env={"SHOAL_CLUSTER_SECRET": SECRET})  # fmt: skip
    node.port = port
    node.start(wait=False)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(node.url + "/health", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.05)
    else:
        raise TimeoutError(f"the node did not come up:\n{node.log()}")
    yield node
    node.kill()


small = st.integers(min_value=0, max_value=60)
extreme = st.sampled_from([0, 1, 2**31, 2**53 + 1, MAX_TERM - 1, MAX_TERM, 2**63 - 1])
out_of_range = st.sampled_from([-1, -(2**63), MAX_TERM + 1, 2**63, 2**64 - 1])
wrong = st.one_of(out_of_range, st.booleans(), st.text(max_size=5), st.none(), st.floats(),
                  st.binary(max_size=4))  # fmt: skip
integers = st.one_of(small, small, small, small, extreme)
flags = st.booleans()
payloads = st.one_of(
    st.binary(max_size=64),
    st.builds(msgpack.packb, st.dictionaries(st.text(max_size=8), st.integers(0, 99), max_size=3)),
    st.builds(msgpack.packb, st.lists(st.one_of(st.text(max_size=6), st.integers(0, 99)),
                                      max_size=4)),  # fmt: skip
)
entry = st.one_of(
    st.tuples(small, small, st.sampled_from([0, 1, 2]), payloads).map(list),
    st.tuples(integers, integers, st.one_of(st.sampled_from([0, 1, 2, 3, -1]), wrong),
              st.one_of(payloads, wrong)).map(list),  # fmt: skip
    st.lists(small, max_size=5),
    wrong,
)


@st.composite
def raft_messages(draw: st.DrawFn) -> bytes:
    """A message of a real kind with its exact fields, mostly well typed:
    what gets past the parser, to the Raft core."""
    cls = draw(st.sampled_from(sorted(_KINDS.values(), key=lambda c: c.kind)))
    body: dict[str, Any] = {"kind": cls.kind}
    for name, expected in _field_types(cls).items():
        if draw(st.integers(0, 39)) == 0:  # now and then a field of the wrong type or range
            body[name] = draw(wrong)
        elif name == "sender":
            body[name] = draw(st.one_of(st.sampled_from(MEMBERS), st.sampled_from(MEMBERS),
                                        st.just("n1"), st.text(max_size=8)))  # fmt: skip
        elif expected is bool:
            body[name] = draw(flags)
        elif expected is int:
            body[name] = draw(integers)
        else:
            body[name] = draw(st.lists(entry, max_size=4))
    if draw(st.integers(0, 9)) == 0:  # now and then a field too many or too few
        if draw(st.booleans()):
            body["extra"] = draw(integers)
        else:
            body.pop(draw(st.sampled_from(sorted(body))))
    return bytes(msgpack.packb(body))


bodies = st.one_of(
    raft_messages(),
    raft_messages(),
    raft_messages(),
    st.binary(max_size=200),
    st.builds(
        msgpack.packb,
        st.recursive(
            st.one_of(st.integers(-(2**63), 2**64 - 1), st.text(max_size=5),
                      st.binary(max_size=5), st.none()),  # fmt: skip
            lambda inner: st.lists(inner, max_size=3)
            | st.dictionaries(st.text(max_size=5), inner, max_size=3),
            max_leaves=8,
        ),
    ),
)


def _post(node: NodeProcess, body: bytes, sender: str | None) -> httpx.Response:
    headers = {"X-Shoal-Cluster-Secret": SECRET, "Content-Type": "application/msgpack"}
    if sender is not None:
        headers["X-Shoal-From"] = sender
        headers["X-Shoal-Cluster"] = node.cluster()["cluster_id"]
    return httpx.post(node.url + "/_cluster/raft", content=body, headers=headers, timeout=10)


@settings(max_examples=400, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture,
                                 HealthCheck.too_slow])  # fmt: skip
@given(body=bodies, sender=st.one_of(st.none(), st.sampled_from(MEMBERS)))
def test_raft_messages_get_a_problem_or_a_real_answer(
    lone_node: NodeProcess, body: bytes, sender: str | None
) -> None:
    answer = _post(lone_node, body, sender)
    assert answer.status_code in ANSWERS, (answer.status_code, answer.text[:300], body[:200])
    if answer.status_code == 200 and answer.content:
        try:
            decode(answer.content)
        except MalformedMessage as exc:
            pytest.fail(f"a 200 that is not a raft message: {exc}; request {body[:200]!r}")
    elif answer.status_code != 200:
        assert answer.headers["content-type"].startswith("application/problem+json")


def test_the_node_lives_on_after_the_fuzzing(lone_node: NodeProcess) -> None:
    """Runs after the fuzzer (same module): the node is alive, answers at
    once, its term is one peers can decode (the fuzzer sends the highest a
    message may carry), and a plain vote request from a member still gets a
    vote answer."""
    assert lone_node.process is not None and lone_node.process.poll() is None, lone_node.log()
    started = time.monotonic()
    assert httpx.get(lone_node.url + "/health", timeout=5).status_code == 200
    assert time.monotonic() - started < 1.0
    status = lone_node.cluster()
    assert status["term"] <= MAX_TERM
    vote = {"kind": "vote", "term": min(status["term"] + 1, MAX_TERM), "sender": "n2",
            "last_index": 0,
            "last_term": 0, "pre_vote": True, "rpc": 1}  # fmt: skip
    answer = _post(lone_node, bytes(msgpack.packb(vote)), "n2")
    assert answer.status_code == 200, answer.text
    assert decode(answer.content).kind == "vote_resp"


@pytest.mark.parametrize("damage", [b"garbage" * 100, b"", bytes(range(256)) * 4])
def test_a_damaged_snapshot_gets_a_problem_and_changes_nothing(
    lone_node: NodeProcess, damage: bytes
) -> None:
    """A snapshot streamed by a leader that does not read back is answered
    on the status poll with a 422 problem (the leader sends it again), not a
    500; the node's state is what it was."""
    before = lone_node.cluster()
    term = min(before["term"] + 1, MAX_TERM)  # the fuzzing may have left it at the highest
    key = {"index": 40, "term": term, "leader": "n2", "leader_term": term, "rpc": 9}
    headers = {"X-Shoal-Cluster-Secret": SECRET, "X-Shoal-Cluster": before["cluster_id"],
               "X-Shoal-From": "n2", "Content-Type": "application/octet-stream"}  # fmt: skip
    sent = httpx.post(lone_node.url + "/_cluster/snapshot", params={**key, "offset": 0, "done": 1},
                      content=damage, headers=headers, timeout=10)  # fmt: skip
    assert sent.status_code == 200, sent.text
    deadline = time.monotonic() + 20
    while True:
        status = httpx.post(lone_node.url + "/_cluster/snapshot/status", params=key,
                            headers=headers, timeout=10)  # fmt: skip
        if status.status_code != 200 or status.content or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert status.status_code == 422, status.text
    assert status.headers["content-type"].startswith("application/problem+json")
    assert "snapshot sent for entry 40" in status.json()["detail"]
    after = lone_node.cluster()
    assert after["applied_index"] == before["applied_index"]
    assert after["snapshot"] == before["snapshot"]
    assert after["term"] <= MAX_TERM


def test_a_snapshot_offered_beyond_the_highest_term_is_refused(lone_node: NodeProcess) -> None:
    """The snapshot endpoints take their terms from the query string, past
    the message decoder: the same bound holds there."""
    before = lone_node.cluster()
    headers = {"X-Shoal-Cluster-Secret": SECRET, "X-Shoal-Cluster": before["cluster_id"],
               "X-Shoal-From": "n2", "Content-Type": "application/octet-stream"}  # fmt: skip
    for term, leader_term in ((MAX_TERM + 1, 1), (1, MAX_TERM + 1)):
        key = {"index": 40, "term": term, "leader": "n2", "leader_term": leader_term, "rpc": 3}
        sent = httpx.post(lone_node.url + "/_cluster/snapshot",
                          params={**key, "offset": 0, "done": 0}, content=b"x",
                          headers=headers, timeout=10)  # fmt: skip
        assert sent.status_code == 422, sent.text
    assert lone_node.cluster()["term"] == before["term"]
