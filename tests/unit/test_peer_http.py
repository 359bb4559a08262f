"""The keep-alive client Raft uses between peers, against a real socket server."""

from __future__ import annotations

import asyncio

import pytest

from replication.peer_http import PeerHttp, PeerUnreachable


class Server:
    """A tiny HTTP/1.1 server whose behaviour each test sets."""

    def __init__(self) -> None:
        self.requests: list[bytes] = []
        self.connections = 0
        self.close_after_answer = False
        self.silent = False
        self.status = 200
        self.extra_headers = b""

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                              if line.lower().startswith(b"content-length"))  # fmt: skip
                body = await reader.readexactly(length)
                self.requests.append(body)
                if self.silent:
                    await asyncio.sleep(10)
                answer = b"echo:" + body
                writer.write(b"HTTP/1.1 %d X\r\n%sContent-Length: %d\r\n\r\n%s"
                             % (self.status, self.extra_headers, len(answer), answer))  # fmt: skip
                await writer.drain()
                if self.close_after_answer:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


async def _with_server(test: object) -> None:
    server = Server()
    listening = await asyncio.start_server(server.handle, "127.0.0.1", 0)
    port = listening.sockets[0].getsockname()[1]
    client = PeerHttp(f"http://127.0.0.1:{port}", {"X-Test": "1"}, timeout=0.5)
    try:
        await test(server, client)  # type: ignore[operator]
    finally:
        await client.close()
        listening.close()


def test_requests_reuse_one_connection() -> None:
    async def test(server: Server, client: PeerHttp) -> None:
        for n in range(5):
            assert await client.post("/x", b"m%d" % n, "application/msgpack") == (
                200,
                b"echo:m%d" % n,
            )
        assert server.connections == 1

    asyncio.run(_with_server(test))


def test_a_kept_connection_the_peer_closed_is_replaced_and_the_request_goes_again() -> None:
    async def test(server: Server, client: PeerHttp) -> None:
        server.close_after_answer = True
        assert await client.post("/x", b"one", "application/msgpack") == (200, b"echo:one")
        await asyncio.sleep(0.05)  # the server has closed the kept connection
        assert await client.post("/x", b"two", "application/msgpack") == (200, b"echo:two")
        assert server.requests == [b"one", b"two"]

    asyncio.run(_with_server(test))


def test_a_peer_that_does_not_answer_is_unreachable_after_the_timeout() -> None:
    async def test(server: Server, client: PeerHttp) -> None:
        server.silent = True
        with pytest.raises(PeerUnreachable, match="no answer"):
            await client.post("/x", b"one", "application/msgpack")
        server.silent = False
        # The timed-out connection was dropped, not reused half-read.
        assert await client.post("/x", b"two", "application/msgpack") == (200, b"echo:two")
        assert server.connections == 2

    asyncio.run(_with_server(test))


def test_a_closed_port_is_unreachable_and_statuses_come_back() -> None:
    async def test(server: Server, client: PeerHttp) -> None:
        server.status = 503
        assert (await client.post("/x", b"a", "application/msgpack"))[0] == 503
        nobody = PeerHttp("http://127.0.0.1:1", {}, timeout=0.5)
        with pytest.raises(PeerUnreachable):
            await nobody.post("/x", b"a", "application/msgpack")

    asyncio.run(_with_server(test))


def test_a_timeout_while_the_answer_body_arrives_drops_that_connection() -> None:
    async def test(server: Server, client: PeerHttp) -> None:
        reader = asyncio.StreamReader()
        reader.feed_data(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")  # 7 bytes short

        class Writer:
            closed = False

            def write(self, data: bytes) -> None:
                pass

            def close(self) -> None:
                self.closed = True

        stuck = Writer()
        client._idle = [(reader, stuck)]  # type: ignore[list-item]
        client.timeout = 0.1
        with pytest.raises(PeerUnreachable):
            await client.post("/x", b"one", "application/msgpack")
        assert stuck.closed and client._idle == []
        client.timeout = 0.5
        assert await client.post("/x", b"two", "application/msgpack") == (200, b"echo:two")

    asyncio.run(_with_server(test))


def test_the_features_a_peer_names_in_its_answer_are_kept() -> None:
    async def test(server: Server, client: PeerHttp) -> None:
        assert client.features is None  # not heard from yet
        await client.post("/x", b"old", "application/msgpack")
        assert client.features == frozenset()  # an older node names none
        server.extra_headers = b"X-Shoal-Features: request-fingerprints other\r\n"
        await client.post("/x", b"new", "application/msgpack")
        assert client.features == {"request-fingerprints", "other"}

    asyncio.run(_with_server(test))
