"""A local server that speaks Cohere's v2 HTTP API (embed, rerank, chat).

Tests point the official ``cohere`` SDK at it. Answers are deterministic:
embeddings are hashed (1024 dimensions, as embed-english-v3.0), rerank
scores count shared words, chat answers from the best document and cites it.
``fail_next`` queues error statuses per path (with Retry-After: 0) and
``chat_delay`` slows chat, so retries and cancellation can be exercised.
"""

from __future__ import annotations

import asyncio
import re
import threading
import time
import uuid
from typing import Any

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from node.embeddings.local_hash import LocalHashEmbedder
from tests.harness import free_port

DIMENSION = 1024
_WORDS = re.compile(r"\w+")


def words(text: str) -> set[str]:
    return {word.lower() for word in _WORDS.findall(text)}


class FakeCohere:
    def __init__(self) -> None:
        self.port = free_port()
        self.requests: list[tuple[str, dict[str, Any]]] = []
        self.fail_next: dict[str, list[int]] = {}
        self.chat_delay = 0.0
        self._embedder = LocalHashEmbedder()
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def calls(self, path: str) -> list[dict[str, Any]]:
        return [body for seen, body in self.requests if seen == path]

    def app(self) -> FastAPI:
        app = FastAPI()

        async def record(request: Request, path: str) -> tuple[dict[str, Any], JSONResponse | None]:
            body = await request.json()
            self.requests.append((path, body))
            if not request.headers.get("authorization", "").startswith("Bearer "):
                return body, JSONResponse({"message": "no api key"}, status_code=401)
            queued = self.fail_next.get(path)
            if queued:
                status = queued.pop(0)
                return body, JSONResponse({"message": f"injected {status}"}, status_code=status,
                                          headers={"Retry-After": "0"})  # fmt: skip
            return body, None

        @app.post("/v2/embed")
        async def embed(request: Request) -> Any:
            body, failure = await record(request, "embed")
            if failure:
                return failure
            vectors = self._embedder.embed(body["texts"], DIMENSION, body["input_type"])
            return {"id": str(uuid.uuid4()), "response_type": "embeddings_by_type",
                    "embeddings": {"float": vectors.tolist()}, "texts": body["texts"],
                    "meta": {"api_version": {"version": "2"},
                             "billed_units": {"input_tokens": 1}}}  # fmt: skip

        @app.post("/v2/rerank")
        async def rerank(request: Request) -> Any:
            body, failure = await record(request, "rerank")
            if failure:
                return failure
            query = words(body["query"])
            scored = [(len(query & words(doc)) / (1 + len(query)), n)
                      for n, doc in enumerate(body["documents"])]  # fmt: skip
            scored.sort(key=lambda pair: (-pair[0], pair[1]))
            top = scored[: body.get("top_n") or len(scored)]
            return {"id": str(uuid.uuid4()),
                    "results": [{"index": n, "relevance_score": s} for s, n in top],
                    "meta": {"api_version": {"version": "2"}}}  # fmt: skip

        @app.post("/v2/chat")
        async def chat(request: Request) -> Any:
            body, failure = await record(request, "chat")
            if failure:
                return failure
            if self.chat_delay:
                await asyncio.sleep(self.chat_delay)  # a slow model
            documents = body.get("documents") or []
            question = body["messages"][-1]["content"]
            best = max(documents, key=lambda d: len(words(question) & words(d["data"]["text"])),
                       default=None)  # fmt: skip
            if best is None:
                text, citations = "I found nothing to answer from.", []
            else:
                quote = best["data"]["text"][:200]
                text = f"According to the library: {quote}"
                start = text.index(quote)
                citations = [{"start": start, "end": start + len(quote), "text": quote,
                              "type": "TEXT_CONTENT",
                              "sources": [{"type": "document", "id": best["id"],
                                           "document": best["data"]}]}]  # fmt: skip
            return {"id": str(uuid.uuid4()), "finish_reason": "COMPLETE",
                    "message": {"role": "assistant", "content": [{"type": "text", "text": text}],
                                "citations": citations},
                    "usage": {"billed_units": {"input_tokens": 1, "output_tokens": 1}}}  # fmt: skip

        return app

    def start(self) -> FakeCohere:
        config = uvicorn.Config(self.app(), host="127.0.0.1", port=self.port, log_level="warning")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 20
        while not self._server.started and time.monotonic() < deadline:
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(10)
