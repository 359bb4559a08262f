"""`shoal cluster ...` talks to the leader by the URL the user gave for it,
not by the one it advertises (a name only the nodes resolve, say)."""

from __future__ import annotations

import httpx
import pytest

from node.cli_cluster import ClusterCommandFailed, _leader_url

INSIDE = {"n1": "http://n1:7700", "n2": "http://n2:7700"}
GIVEN = {"n1": "http://127.0.0.1:7701", "n2": "http://127.0.0.1:7702"}


def answering(leader: str, down: tuple[str, ...] = (), leader_url: str | None = None,
              asked: list[str] | None = None) -> httpx.Client:  # fmt: skip
    by_port = {url.rsplit(":", 1)[1]: node for node, url in GIVEN.items()}

    def handle(request: httpx.Request) -> httpx.Response:
        if asked is not None:
            asked.append(str(request.url))
        node = by_port.get(str(request.url.port))
        if node is None or node in down:
            raise httpx.ConnectError("refused", request=request)
        return httpx.Response(200, json={
            "node_id": node, "term": 3, "role": "leader" if node == leader else "follower",
            "leader_id": leader, "leader_url": leader_url or INSIDE[leader],
            "members": [{"id": n, "url": url, "voter": True} for n, url in INSIDE.items()],
        })  # fmt: skip

    return httpx.Client(transport=httpx.MockTransport(handle))


def test_the_leader_is_reached_by_the_given_url() -> None:
    with answering("n2") as http:
        assert _leader_url(http, list(GIVEN.values())) == GIVEN["n2"]


def test_a_leader_not_among_the_given_urls_is_reached_by_its_own() -> None:
    with answering("n2", down=("n2",)) as http:
        assert _leader_url(http, list(GIVEN.values())) == INSIDE["n2"]


def test_a_leader_url_no_given_node_lists_as_a_member_is_never_contacted() -> None:
    """The commands carry the cluster secret and the API key."""
    asked: list[str] = []
    refused = pytest.raises(ClusterCommandFailed, match="http://evil.test:80, which is neither")
    with answering("n9", leader_url="http://evil.test:80", asked=asked) as http, refused:
        _leader_url(http, list(GIVEN.values()))
    assert asked and all("evil" not in url for url in asked)


def test_given_https_the_leader_is_not_reached_over_http() -> None:
    secure = {node: url.replace("http://", "https://") for node, url in GIVEN.items()}
    with answering("n2", down=("n2",)) as http, pytest.raises(ClusterCommandFailed,
                                                             match="downgrade"):  # fmt: skip
        _leader_url(http, list(secure.values()))


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
