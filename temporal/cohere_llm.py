"""Rerank and grounded answers through Cohere's official SDK (async client).

429s and 5xx answers are retried by the SDK with backoff; what still fails
raises, and the activity's retry policy takes over.
"""

from __future__ import annotations

from typing import Any

import cohere

from temporal.models import Answer, Citation, Hit

RERANK_MODEL = "rerank-v3.5"
CHAT_MODEL = "command-a-03-2025"


class CohereLLM:
    def __init__(self, api_key: str, base_url: str | None = None,
                 rerank_model: str = RERANK_MODEL, chat_model: str = CHAT_MODEL,
                 max_retries: int = 4, timeout: float = 60.0) -> None:  # fmt: skip
        self.rerank_model, self.chat_model = rerank_model, chat_model
        self._client = cohere.AsyncClientV2(
            api_key=api_key, base_url=base_url, max_retries=max_retries, timeout=timeout
        )

    async def rerank(self, question: str, hits: list[Hit], k: int) -> list[Hit]:
        if not hits:
            return []
        response = await self._client.rerank(
            model=self.rerank_model, query=question, documents=[hit.text for hit in hits],
            top_n=min(k, len(hits)),
        )  # fmt: skip
        ranked = []
        for result in response.results:
            hit = hits[result.index]
            ranked.append(Hit(hit.chunk_id, hit.document_id, hit.text, hit.score,
                              float(result.relevance_score)))  # fmt: skip
        return ranked

    async def answer(self, question: str, hits: list[Hit]) -> Answer:
        documents: list[Any] = [{"id": hit.chunk_id, "data": {"text": hit.text}} for hit in hits]
        response = await self._client.chat(
            model=self.chat_model,
            messages=[cohere.UserChatMessageV2(content=question)],
            documents=documents,
        )
        message = response.message
        text = "".join(
            getattr(part, "text", "") for part in (message.content or [])
            if getattr(part, "type", "text") == "text"
        )  # fmt: skip
        citations = []
        for citation in message.citations or []:
            for source in citation.sources or []:
                source_id = getattr(source, "id", None)
                if source_id:
                    citations.append(Citation(source_id, citation.text or ""))
        return Answer(text, "generated", citations)
