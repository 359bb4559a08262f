"""The client's decisions, without a network."""

from __future__ import annotations

import random

import pytest
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


def test_one_string_may_list_several_urls_as_shoal_url_does() -> None:
    state = ClusterState.from_urls(" http://a:1/, http://b:2 ,", None, 5)
    assert state.nodes == ["http://a:1", "http://b:2"]
    with pytest.raises(ValueError, match="at least one node URL"):
        ClusterState.from_urls(" , ", None, 5)


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


def compose_view(node_id: str, leader_id: str) -> dict[str, object]:
    """What a node in docker-compose.cluster.yml says: names only its peers resolve."""
    others = [n for n in ("n1", "n2", "n3") if n != node_id]
    return {"node_id": node_id, "url": f"http://{node_id}:7700",
            "role": "leader" if node_id == leader_id else "follower",
            "leader_id": leader_id, "leader_url": f"http://{leader_id}:7700",
            "peers": [{"id": n, "url": f"http://{n}:7700"} for n in others]}  # fmt: skip


def test_a_leader_named_by_an_internal_address_is_found_by_a_given_url() -> None:
    given = ["http://localhost:7701", "http://localhost:7702", "http://localhost:7703"]
    state = ClusterState.from_urls(given, None, 5)
    state.learn(compose_view("n1", leader_id="n3"), "http://localhost:7701")
    # the leader is known only as http://n3:7700, which the host cannot resolve
    assert state.leader == "http://n3:7700" and not state.leader_reachable()
    # so the client goes on asking the URLs it was given, never the internal names
    assert "http://n3:7700" not in state.discovery_targets()
    state.learn(compose_view("n2", leader_id="n3"), "http://localhost:7702")
    assert not state.leader_reachable()
    state.learn(compose_view("n3", leader_id="n3"), "http://localhost:7703")
    assert state.leader_reachable() and state.leader == "http://localhost:7703"
    assert state.nodes == given


def test_a_single_url_learns_the_other_nodes_from_it() -> None:
    state = ClusterState.from_urls("http://10.0.0.1:7700", None, 5)
    state.learn({**compose_view("n1", leader_id="n1"), "url": "http://10.0.0.1:7700"},
                "http://10.0.0.1:7700")  # fmt: skip
    assert state.leader_reachable()
    assert state.nodes == ["http://10.0.0.1:7700", "http://n2:7700", "http://n3:7700"]
    # a read answered through an advertised URL identifies that node by it
    read = Call("GET", "/libraries")
    send = state.plan(read)
    assert send is not None and send.node in ("http://n2:7700", "http://n3:7700")
    node_id = send.node.removeprefix("http://").split(":")[0]
    state.after_response(send, read, 0, 200, {"x-shoal-node": node_id}, None)
    assert state.reached[node_id] == send.node


def test_the_async_client_offers_every_method_of_the_sync_one() -> None:
    import inspect

    from shoal_client import AsyncClient, Client

    def public(cls: type) -> dict[str, inspect.Signature]:
        return {name: inspect.signature(member) for name, member in vars(cls).items()
                if callable(member) and not name.startswith("_")}  # fmt: skip

    sync, asynchronous = public(Client), public(AsyncClient)
    assert set(sync) == set(asynchronous)
    for name, signature in sync.items():
        theirs = asynchronous[name]
        assert list(signature.parameters) == list(theirs.parameters), name
        for param in signature.parameters.values():
            assert param.default == theirs.parameters[param.name].default, (name, param.name)
        method = getattr(AsyncClient, name)
        assert inspect.iscoroutinefunction(method) or inspect.isasyncgenfunction(method), name


def test_fresh_clients_spread_their_first_reads() -> None:
    given = ["http://a", "http://b", "http://c"]
    first = set()
    for seed in range(30):
        state = ClusterState(given=given, rng=random.Random(seed))
        send = state.plan(Call("GET", "/libraries"))
        assert send is not None
        first.add(send.node)
    assert first == set(given)


def test_a_redirect_to_a_host_nobody_vouched_for_is_not_followed() -> None:
    state = ClusterState.from_urls("http://a:7700", "the-key", 5)
    state.learn({**VIEW, "node_id": "n1", "url": "http://a:7700", "leader_id": "n1",
                 "leader_url": "http://a:7700", "peers": []}, "http://a:7700")  # fmt: skip
    call = Call("POST", "/libraries", {"name": "x"}, write=True)
    send = state.plan(call)
    assert send is not None and send.headers["X-API-Key"] == "the-key"
    state.after_response(send, call, 0, 307, {"location": "http://evil.test/libraries"},
                         {"leader_id": "n9"})  # fmt: skip
    assert state.leader is None and state.refused == "http://evil.test"
    assert all("evil" not in url for url in state.nodes)
    error = state.no_leader(call)
    assert "http://evil.test" in str(error) and "API key" in str(error)


def test_members_the_users_nodes_list_are_trusted_and_others_are_not() -> None:
    state = ClusterState.from_urls("http://localhost:7701", "k", 5)
    state.learn(VIEW, "http://localhost:7701")  # reached through the user's URL
    assert state.trusts("http://n2:7700") and state.trusts("http://n3:7700")
    send = state.plan(Call("POST", "/x", write=True))
    assert send is not None and send.url == "http://n2:7700/x"
    # a node reached only through an advertised URL vouches for nobody new
    state.learn({**VIEW, "node_id": "n3", "url": "http://n3:7700",
                 "peers": [{"id": "n4", "url": "http://n4:7700"}]}, "http://n3:7700")  # fmt: skip
    assert not state.trusts("http://n4:7700") and "http://n4:7700" not in state.nodes


def test_given_https_no_url_is_reached_over_plain_http() -> None:
    state = ClusterState.from_urls(["https://db.example:7700"], "k", 5)
    downgraded = {**VIEW, "node_id": "n1", "url": "https://db.example:7700", "leader_id": "n2",
                  "leader_url": "http://db.example:7701",
                  "peers": [{"id": "n2", "url": "http://db.example:7701"},
                            {"id": "n3", "url": "https://n3.example:7700"}]}  # fmt: skip
    state.learn(downgraded, "https://db.example:7700")
    assert state.leader is None and state.refused == "http://db.example:7701"
    assert not state.trusts("http://db.example:7700")  # not even the user's host
    assert state.trusts("https://n3.example:7700")
    assert all(url.startswith("https://") for url in state.nodes)


def test_a_relative_redirect_points_at_the_node_that_answered() -> None:
    state = ClusterState.from_urls("http://a:7700", "k", 5)
    state.leader = "http://a:7700"
    call = Call("POST", "/libraries", {"name": "x"}, write=True)
    send = state.plan(call)
    assert send is not None
    state.after_response(send, call, 0, 307, {"location": "/libraries"}, None)
    assert state.leader == "http://a:7700" and state.refused is None


def test_a_node_shedding_load_is_waited_for_then_given_up_on() -> None:
    from shoal_client import TooManyRequests

    state = ClusterState.from_urls("http://a", None, 2)
    state.leader = "http://a"
    call = Call("POST", "/x", write=True)
    send = state.plan(call)
    assert send is not None
    problem = {"type": "https://shoal.dev/problems/too-many-requests", "detail": "slow down"}
    wait = state.after_response(send, call, 0, 429, {"retry-after": "3"}, problem)
    assert wait.error is None and wait.delay == 3.0
    last = state.after_response(send, call, 1, 429, {"retry-after": "3"}, problem)
    assert isinstance(last.error, TooManyRequests) and "slow down" in str(last.error)
