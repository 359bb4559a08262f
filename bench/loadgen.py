"""A lean HTTP/1.1 load generator for the benchmarks.

httpx spends about a millisecond of CPU per request; on a 2-core machine
that shares its cores with the servers, the client then sets the pace, not
the server. This one keeps one keep-alive connection per simulated client
on asyncio streams, writes prebuilt request bytes and reads a
Content-Length (or chunked) answer: tens of microseconds per request.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

# (method, path, JSON body or None) for request number n.
RequestFor = Callable[[int], tuple[str, str, object | None]]


@dataclass
class Result:
    operations: int
    seconds: float
    latencies: list[float]

    @property
    def rate(self) -> float:
        return self.operations / self.seconds

    @property
    def p50_ms(self) -> float:
        return 1000 * statistics.median(self.latencies)


def encode(host: str, method: str, path: str, body: object | None) -> bytes:
    payload = b"" if body is None else json.dumps(body).encode()
    head = f"{method} {path} HTTP/1.1\r\nHost: {host}\r\nContent-Length: {len(payload)}\r\n"
    if body is not None:
        head += "Content-Type: application/json\r\n"
    return head.encode() + b"\r\n" + payload


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    status_line = await reader.readline()
    if not status_line:
        raise ConnectionError("the server closed the connection")
    status = int(status_line.split()[1])
    length, chunked = 0, False
    while True:
        line = await reader.readline()
        if line in (b"\r\n", b""):
            break
        name, _, value = line.decode("latin-1").partition(":")
        name = name.strip().lower()
        if name == "content-length":
            length = int(value)
        elif name == "transfer-encoding" and "chunked" in value.lower():
            chunked = True
    if not chunked:
        return status, await reader.readexactly(length)
    body = bytearray()
    while True:
        size = int((await reader.readline()).split(b";")[0], 16)
        if size == 0:
            await reader.readline()
            return status, bytes(body)
        body += await reader.readexactly(size)
        await reader.readline()


async def _run(url: str, request_for: RequestFor, clients: int, seconds: float) -> Result:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    latencies: list[float] = []

    async def client(worker: int) -> None:
        reader, writer = await asyncio.open_connection(host, port)
        try:
            n = worker
            # One request first, untimed: connection and server paths warm.
            for timed in (False, True):
                while True:
                    method, path, body = request_for(n)
                    started = time.perf_counter()
                    writer.write(encode(f"{host}:{port}", method, path, body))
                    status, answer = await read_response(reader)
                    if status >= 300:
                        raise RuntimeError(f"{method} {path}: {status} {answer[:300]!r}")
                    n += clients
                    if not timed:
                        break
                    latencies.append(time.perf_counter() - started)
                    if time.perf_counter() >= stop:
                        break
        finally:
            writer.close()

    stop = time.perf_counter() + seconds
    started = time.perf_counter()
    await asyncio.gather(*(client(w) for w in range(clients)))
    return Result(len(latencies), time.perf_counter() - started, latencies)


def drive(url: str, request_for: RequestFor, clients: int, seconds: float) -> Result:
    """``clients`` closed loops against ``url`` for about ``seconds``."""
    return asyncio.run(_run(url, request_for, clients, seconds))
