"""`shoal cluster ...` talks to the leader by the URL the user gave for it,
not by the one it advertises (a name only the nodes resolve, say)."""

from __future__ import annotations

import httpx
import pytest

from node.cli_cluster import ClusterCommandFailed, _leader_url

INSIDE = {"n1": "http://n1:7700", "n2": "http://n2:7700"}
GIVEN = {"n1": "http://127.0.0.1:7701", "n2": "http://127.0.0.1:7702"}


def answering(leader: str, down: tuple[str, ...] = ()) -> httpx.Client:
    by_port = {url.rsplit(":", 1)[1]: node for node, url in GIVEN.items()}

    def handle(request: httpx.Request) -> httpx.Response:
        node = by_port[str(request.url.port)]
        if node in down:
            raise httpx.ConnectError("refused", request=request)
        return httpx.Response(200, json={
            "node_id": node, "term": 3, "role": "leader" if node == leader else "follower",
            "leader_id": leader, "leader_url": INSIDE[leader],
        })  # fmt: skip

    return httpx.Client(transport=httpx.MockTransport(handle))


def test_the_leader_is_reached_by_the_given_url() -> None:
    with answering("n2") as http:
        assert _leader_url(http, list(GIVEN.values())) == GIVEN["n2"]


def test_a_leader_not_among_the_given_urls_is_reached_by_its_own() -> None:
    with answering("n2", down=("n2",)) as http:
        assert _leader_url(http, list(GIVEN.values())) == INSIDE["n2"]


def test_no_answer_is_a_sentence() -> None:
    refused = pytest.raises(ClusterCommandFailed, match="no node answered")
    with answering("n1", down=("n1", "n2")) as http, refused:
        _leader_url(http, list(GIVEN.values()))


def test_a_change_that_times_out_is_a_sentence_not_a_traceback(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import argparse

    from node import cli_cluster

    def handle(request: httpx.Request) -> httpx.Response:
        if request.method == "GET":
            view = {"node_id": "n1", "term": 1, "role": "leader", "leader_id": "n1",
                    "leader_url": GIVEN["n1"]}  # fmt: skip
            return httpx.Response(200, json=view)
        raise httpx.ReadTimeout("timed out", request=request)

    real = httpx.Client
    monkeypatch.setattr(cli_cluster.httpx, "Client",
                        lambda **kw: real(transport=httpx.MockTransport(handle), **kw))  # fmt: skip
    args = argparse.Namespace(action="promote", node_id="n4", url=GIVEN["n1"],
                              cluster_secret="s")  # fmt: skip
    assert cli_cluster.run(args) == 1
    said = capsys.readouterr().err
    assert "may or may not have been made" in said and "Traceback" not in said
