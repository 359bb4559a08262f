"""The client's decisions, without a network."""

from __future__ import annotations

from shoal_client import NoLeader, NotFound, OutcomeUnknown
from shoal_client._protocol import Call, ClusterState

VIEW = {
    "node_id": "n1", "url": "http://n1:7700", "role": "follower",
    "leader_id": "n2", "leader_url": "http://n2:7700",
    "peers": [{"id": "n2", "url": "http://n2:7700"}, {"id": "n3", "url": "http://n3:7700"}],
}  # fmt: skip


def test_urls_the_user_gave_win_over_advertised_ones() -> None:
    state = ClusterState.from_urls(["http://localhost:7701", "http://localhost:7702"], None, 5)
    state.learn(VIEW, "http://localhost:7701")
    state.learn({**VIEW, "node_id": "n2", "role": "leader"}, "http://localhost:7702")
    assert state.leader == "http://localhost:7702"
    send = state.plan(Call("POST", "/libraries", {"name": "x"}, write=True))
    assert send is not None and send.url == "http://localhost:7702/libraries"
    # a redirect naming a node the client knows goes to the client's URL for it
    decision = state.after_response(send, Call("POST", "/libraries", write=True), 0, 307,
                                    {"location": "http://n1:7700/libraries"},
                                    {"leader_id": "n1"})  # fmt: skip
    assert not decision.done and state.leader == "http://localhost:7701"


def test_writes_keep_one_key_and_reads_carry_the_last_index() -> None:
    state = ClusterState.from_urls("http://a", None, 5)
    state.learn({**VIEW, "node_id": "n1", "leader_id": "n1", "leader_url": "http://a",
                 "peers": []}, "http://a")  # fmt: skip
    call = Call("PATCH", "/libraries/l", {"name": "y"}, write=True)
    first, second = state.plan(call), state.plan(call)
    assert (
        first and second and first.headers["Idempotency-Key"] == second.headers["Idempotency-Key"]
    )
    state.after_response(first, call, 0, 200, {"x-shoal-index": "41"}, None)
    read = state.plan(Call("GET", "/libraries/l"))
    assert read is not None and read.headers["X-Shoal-Min-Index"] == "41"


def test_problems_map_to_the_error_tree_and_retries() -> None:
    state = ClusterState.from_urls("http://a", None, 3)
    state.leader = "http://a"
    call = Call("POST", "/x", write=True)
    send = state.plan(call)
    assert send is not None
    retry = state.after_response(send, call, 0, 503, {}, {"type": "p/no-leader", "detail": "d"})
    assert retry.error is None and retry.delay > 0 and state.leader is None
    state.leader = "http://a"
    last = state.after_response(send, call, 2, 503, {}, {"type": "p/outcome-unknown",
                                                         "detail": "maybe"})  # fmt: skip
    assert isinstance(last.error, OutcomeUnknown) and "maybe" in str(last.error)
    missing = state.after_response(send, call, 0, 404, {}, {"type": "p/not-found",
                                                            "detail": "library l"})  # fmt: skip
    assert isinstance(missing.error, NotFound) and "library l" in str(missing.error)
    assert not isinstance(missing.error, NoLeader)
