"""The synchronous client."""

from __future__ import annotations

import contextlib
import ssl
import time
import uuid
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx

from shoal_client import _calls as calls
from shoal_client._errors import Conflict, ShoalError
from shoal_client._models import Answer, Chunk, Document, Library, NodeStatus, QueryResult
from shoal_client._protocol import Call, ClusterState, Decision, tls_verify
from shoal_client._wire import decode


class Client:
    """A Shoal client for one or several node URLs (any node of the cluster):
    a list, or one string with commas between them (as in ``SHOAL_URL``).

    It finds the leader for writes, follows redirects, spreads reads over the
    followers, retries across a failover with one Idempotency-Key per write,
    and always reads its own writes. ``verify``: how servers' certificates
    are checked over https (a CA bundle's path, an SSLContext, or True for
    the system's CAs and ``SSL_CERT_FILE``).
    """

    def __init__(
        self,
        urls: str | list[str],
        *,
        api_key: str | None = None,
        timeout: float = 30.0,
        max_attempts: int = 20,
        verify: bool | str | ssl.SSLContext = True,
    ) -> None:
        self._state = ClusterState.from_urls(urls, api_key, max_attempts)
        self._http = httpx.Client(
            timeout=timeout, follow_redirects=False, verify=tls_verify(verify)
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def last_index(self) -> int:
        """The highest log index of this client's writes (sent on every read)."""
        return self._state.last_index

    # -------------------------------------------------------------- plumbing
    def _discover(self, attempt: int) -> None:
        state = self._state
        headers = {"X-API-Key": state.api_key} if state.api_key else {}
        for node in state.discovery_targets():
            try:
                view = decode(self._http.get(node + "/cluster", headers=headers).content)
            except (httpx.HTTPError, ValueError):
                continue
            state.learn(view, node)
            if state.leader_reachable():
                return
        if state.leader:  # known only by the URL it advertises: try that
            return
        time.sleep(state.backoff(attempt))

    def _send(self, call: Call) -> httpx.Response:
        state = self._state
        for attempt in range(state.max_attempts):
            send = state.plan(call)
            if send is None:
                self._discover(attempt)
                continue
            decision: Decision
            try:
                response = self._http.request(
                    send.method,
                    send.url,
                    headers=send.headers,
                    params=send.params,
                    content=send.content,
                )
            except httpx.TransportError as exc:
                decision = state.after_failure(send, call, attempt, exc)
            else:
                decision = state.after_response(
                    send, call, attempt, response.status_code, _headers(response), _body(response)
                )
                if decision.done:
                    return response
            if decision.error is not None:
                raise decision.error
            if decision.delay:
                time.sleep(decision.delay)
        raise state.no_leader(call)

    def _json(self, call: Call) -> Any:
        return decode(self._send(call).content)

    # ------------------------------------------------------------- libraries
    def create_library(
        self,
        name: str,
        *,
        description: str | None = None,
        dimension: int | None = None,
        metric: str = "cosine",
        index_type: str = "brute_force",
        index_params: dict[str, Any] | None = None,
        embedding_model: str | None = None,
    ) -> Library:
        return Library.model_validate(
            self._json(
                calls.create_library(
                    name, description, dimension, metric, index_type, index_params, embedding_model
                )
            )
        )

    def get_library(self, library_id: str) -> Library:
        return Library.model_validate(self._json(calls.get_library(library_id)))

    def list_libraries(self, page_size: int = 100) -> Iterator[Library]:
        cursor = None
        while True:
            page = self._json(calls.list_libraries(cursor, page_size))
            yield from (Library.model_validate(item) for item in page["items"])
            cursor = page["next_cursor"]
            if cursor is None:
                return

    def update_library(self, library_id: str, **changes: Any) -> Library:
        return Library.model_validate(self._json(calls.update_library(library_id, changes)))

    def delete_library(self, library_id: str) -> None:
        self._send(calls.delete_library(library_id))

    # ------------------------------------------------------------- documents
    def add_document(
        self,
        library_id: str,
        *,
        text: str | None = None,
        chunks: list[dict[str, Any]] | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> Document:
        body = calls.document_body(text, chunks, metadata)
        return Document.model_validate(self._json(calls.add_document(library_id, body)))

    def upsert_documents(
        self, library_id: str, documents: Iterable[dict[str, Any]], concurrency: int = 4
    ) -> list[Document]:
        """Add many documents (each a dict with ``text`` or ``chunks`` and optional
        ``metadata``), ``concurrency`` at a time. A document identical to one
        already sent gets the same Idempotency-Key, so re-running an interrupted
        import does not add it twice."""

        def one(document: dict[str, Any]) -> Document:
            body = calls.document_body(
                document.get("text"), document.get("chunks"), document.get("metadata")
            )
            key = calls.upsert_key(library_id, body)
            return Document.model_validate(self._json(calls.add_document(library_id, body, key)))

        with ThreadPoolExecutor(max(1, concurrency)) as pool:
            return list(pool.map(one, documents))

    def get_document(
        self,
        library_id: str,
        document_id: str,
        *,
        include_chunks: bool = False,
        include_embeddings: bool = False,
    ) -> Document:
        return Document.model_validate(
            self._json(
                calls.get_document(library_id, document_id, include_chunks, include_embeddings)
            )
        )

    def list_documents(self, library_id: str, page_size: int = 100) -> Iterator[Document]:
        cursor = None
        while True:
            page = self._json(calls.list_documents(library_id, cursor, page_size))
            yield from (Document.model_validate(item) for item in page["items"])
            cursor = page["next_cursor"]
            if cursor is None:
                return

    def update_document(self, library_id: str, document_id: str, **metadata: Any) -> Document:
        return Document.model_validate(
            self._json(calls.update_document(library_id, document_id, metadata))
        )

    def delete_document(self, library_id: str, document_id: str) -> None:
        self._send(calls.delete_document(library_id, document_id))

    # ---------------------------------------------------------------- chunks
    def add_chunks(
        self, library_id: str, document_id: str, chunks: list[dict[str, Any]]
    ) -> list[Chunk]:
        items = self._json(calls.add_chunks(library_id, document_id, chunks))["items"]
        return [Chunk.model_validate(item) for item in items]

    def get_chunk(
        self, library_id: str, chunk_id: str, *, include_embedding: bool = False
    ) -> Chunk:
        return Chunk.model_validate(
            self._json(calls.get_chunk(library_id, chunk_id, include_embedding))
        )

    def update_chunk(
        self,
        library_id: str,
        chunk_id: str,
        *,
        text: str | None = None,
        embedding: list[float] | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> Chunk:
        return Chunk.model_validate(
            self._json(calls.update_chunk(library_id, chunk_id, text, embedding, metadata))
        )

    def delete_chunk(self, library_id: str, chunk_id: str) -> None:
        self._send(calls.delete_chunk(library_id, chunk_id))

    # ----------------------------------------------------------------- reads
    def query(
        self,
        library_id: str,
        *,
        query_text: str | None = None,
        query_embedding: list[float] | None = None,
        k: int = 10,
        filters: dict[str, Any] | None = None,
        include: list[str] | None = None,
        search_params: dict[str, Any] | None = None,
        consistency: str | None = None,
    ) -> QueryResult:
        response = self._send(
            calls.query(
                library_id,
                query_text,
                query_embedding,
                k,
                filters,
                include,
                search_params,
                consistency,
            )
        )
        return QueryResult.model_validate(
            {**decode(response.content), "served_by": response.headers.get("x-shoal-node")}
        )

    def ask(
        self,
        library_id: str,
        question: str,
        *,
        k: int = 5,
        wait: bool = True,
        timeout: float = 120.0,
        workflow_id: str | None = None,
    ) -> Answer:
        """Ask a question; with ``wait`` poll until it is answered."""
        workflow_id = workflow_id or f"ask-{uuid.uuid4()}"
        with contextlib.suppress(Conflict):  # a retried start met its own first attempt
            self._send(calls.ask(library_id, question, k, workflow_id))
        deadline = time.monotonic() + timeout
        while True:
            view = Answer.model_validate(self._json(calls.question(workflow_id)))
            if not wait or view.status != "running" or time.monotonic() > deadline:
                return view
            time.sleep(0.25)

    def cancel_question(self, workflow_id: str) -> None:
        self._send(calls.cancel_question(workflow_id))

    def cluster_status(self) -> list[NodeStatus]:
        """Every known node's own view (unreachable nodes are left out)."""
        if self._state.leader is None:
            self._discover(0)
        headers = {"X-API-Key": self._state.api_key} if self._state.api_key else {}
        views = []
        for node in list(self._state.nodes):
            try:
                views.append(
                    NodeStatus.model_validate(
                        decode(self._http.get(node + "/cluster", headers=headers).content)
                    )
                )
            except (httpx.HTTPError, ValueError, ShoalError):
                continue
        return views


def _headers(response: httpx.Response) -> dict[str, str]:
    return {key.lower(): value for key, value in response.headers.items()}


def _body(response: httpx.Response) -> Any:
    if response.status_code < 300:
        return None
    try:
        return decode(response.content)
    except ValueError:
        return {"detail": response.text or response.reason_phrase}
