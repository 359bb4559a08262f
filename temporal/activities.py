"""The workflow's activities. Each may be retried; none writes anything."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
from temporalio import activity
from temporalio.exceptions import ApplicationError

from node.embeddings import build_registry
from temporal.answering import extractive_answer, lexical_rerank
from temporal.cohere_llm import CHAT_MODEL, RERANK_MODEL, CohereLLM
from temporal.models import (
    Answer,
    AnswerInput,
    AskInput,
    Attempt,
    EmbedInput,
    Hit,
    Prepared,
    RerankInput,
    Retrieved,
    RetrieveInput,
)
from temporal.routing import Target, healthy_followers, leader_view, route_order

MAX_QUESTION = 4_000
CANDIDATES_PER_RESULT = 3  # retrieve more than k, so the rerank has a choice


@dataclass
class WorkerConfig:
    nodes: list[str]
    api_key: str | None = None
    cohere_api_key: str | None = None
    cohere_base_url: str | None = None
    cohere_embed_model: str = "embed-english-v3.0"
    rerank_model: str = RERANK_MODEL
    chat_model: str = CHAT_MODEL
    request_timeout: float = 5.0
    max_lag: int = 50
    extra_headers: dict[str, str] = field(default_factory=dict)


class AskActivities:
    def __init__(self, config: WorkerConfig) -> None:
        if not config.nodes:
            raise ValueError("the worker needs at least one Shoal node URL")
        self.config = config
        self.embedders = build_registry(config.cohere_api_key, config.cohere_embed_model,
                                        config.cohere_base_url)  # fmt: skip
        headers = dict(config.extra_headers)
        if config.api_key:
            headers["X-API-Key"] = config.api_key
        self.http = httpx.AsyncClient(headers=headers, timeout=config.request_timeout)
        self.llm = (
            CohereLLM(
                config.cohere_api_key,
                config.cohere_base_url,
                config.rerank_model,
                config.chat_model,
            )  # fmt: skip
            if config.cohere_api_key
            else None
        )

    async def close(self) -> None:
        await self.http.aclose()
        self.embedders.close()

    @activity.defn(name="preprocess")
    async def preprocess(self, request: AskInput) -> Prepared:
        question = " ".join(request.question.split())
        if not question:
            raise ApplicationError("the question is empty", type="InvalidQuestion",
                                   non_retryable=True)  # fmt: skip
        library = await self._library(request.library_id)
        dimension = library.get("dimension")
        return Prepared(
            question[:MAX_QUESTION],
            int(dimension) if dimension is not None else None,
            str(library["embedding_model"]),
        )

    async def _library(self, library_id: str) -> dict[str, Any]:
        problems = []
        for node in self.config.nodes:
            try:
                response = await self.http.get(f"{node}/libraries/{library_id}")
            except httpx.HTTPError as exc:
                problems.append(f"{node}: {exc!r}")
                continue
            if response.status_code == 404:
                raise ApplicationError(f"library {library_id} does not exist",
                                       type="LibraryNotFound", non_retryable=True)  # fmt: skip
            if response.status_code == 200:
                library: dict[str, Any] = response.json()
                return library
            problems.append(f"{node}: {response.status_code}")
        raise RuntimeError("no node answered: " + "; ".join(problems))

    @activity.defn(name="embed")
    async def embed(self, request: EmbedInput) -> list[float]:
        provider = self.embedders.get(request.model)
        vectors = await asyncio.to_thread(provider.embed, [request.text], request.dimension,
                                          "search_query")  # fmt: skip
        return [float(value) for value in vectors[0]]

    @activity.defn(name="retrieve")
    async def retrieve(self, request: RetrieveInput) -> Retrieved:
        """From a healthy follower; another one if it fails; the leader last."""
        view = await leader_view(self.http, self.config.nodes)
        leader = Target(view["node_id"], view["url"])
        order = route_order(healthy_followers(view, self.config.max_lag), request.route_key)
        attempts: list[Attempt] = []
        body = {"query_embedding": request.vector, "k": request.k * CANDIDATES_PER_RESULT,
                "include": ["text"]}  # fmt: skip
        for target in [*order, leader]:
            try:
                response = await self.http.post(
                    f"{target.url}/libraries/{request.library_id}/query", json=body
                )
            except httpx.HTTPError as exc:
                attempts.append(Attempt(target.node_id, repr(exc)))
                continue
            if response.status_code != 200:
                attempts.append(Attempt(target.node_id, f"answered {response.status_code}"))
                continue
            served_by = response.headers.get("X-Shoal-Node", target.node_id)
            attempts.append(Attempt(served_by))
            hits = [Hit(hit["chunk_id"], hit["document_id"], hit.get("text", ""), hit["score"])
                    for hit in response.json()["results"]]  # fmt: skip
            return Retrieved(hits, served_by, attempts)
        raise RuntimeError(f"every node failed the retrieval: {attempts}")

    @activity.defn(name="rerank")
    async def rerank(self, request: RerankInput) -> list[Hit]:
        if self.llm is not None and request.hits:
            return await self.llm.rerank(request.question, request.hits, request.k)
        return lexical_rerank(request.question, request.hits, request.k)

    @activity.defn(name="answer")
    async def answer(self, request: AnswerInput) -> Answer:
        if self.llm is not None and request.hits:
            return await self.llm.answer(request.question, request.hits)
        return extractive_answer(request.question, request.hits)

    def all(self) -> list[Callable[..., Any]]:
        return [self.preprocess, self.embed, self.retrieve, self.rerank, self.answer]
