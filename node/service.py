"""Requests become commands here; reads are answered from the state machine.

Writes are checked here against the state as it is now, so most mistakes
are refused before anything is logged; many writes, to one library or to
several, are in flight at once. The state may change between that check and
the apply, so the state machine checks again, deterministically, and a
write that no longer fits gets the same error on every replica
(``Rejected``). Validation, embedding and encoding run on worker threads.
Reads take the library's read lock and run on worker threads too.
"""

from __future__ import annotations

import asyncio
import itertools
import secrets
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt
from starlette.concurrency import run_in_threadpool

import indexes
from node import answer_size, cursors, filters, models
from node import commands as cmd
from node.chunking import chunk_text
from node.embeddings import (
    EmbeddingProvider,
    EmbeddingRegistry,
    InputType,
    ProviderFailed,
    UnknownModel,
)
from node.engine import Engine
from node.errors import (
    APPLY_ERRORS,
    Conflict,
    EmbeddingUnavailable,
    InvalidFilter,
    InvalidRequest,
    NoLeader,
    NotFound,
    NotLeaderError,
    OutcomeUnknown,
    ShoalError,
    StorageFailure,
    Unavailable,
    WriteNotApplied,
)
from node.idempotency import request_fingerprint, request_key
from node.ids import new_id, new_ids
from node.store import views
from node.store.library import IF_INDEX, IF_SERVER_EMBEDDED, Library
from node.store.rwlock import LockBusy
from node.timeutil import datetime_to_us, now_us
from node.vectors import check_dimension, embedding_matrix, reject_zero_vectors
from replication.features import REQUEST_FINGERPRINTS
from replication.interfaces import NotAccepting
from replication.raft import HandingOver, NotLeader
from replication.runner import OutcomeUnknown as RaftOutcomeUnknown
from replication.runner import ProposalLost, RaftNode

Written = tuple[Any, int]
WRITE_TIMEOUT = 15.0
T = TypeVar("T")
# Set while a read runs on the event loop: it must not wait for a lock.
_ON_LOOP: ContextVar[bool] = ContextVar("shoal_read_on_loop", default=False)


class Service:
    def __init__(
        self,
        engine: Engine,
        embedders: EmbeddingRegistry,
        max_answer_bytes: int = answer_size.DEFAULT_LIMIT,
    ) -> None:
        self.engine = engine
        self.state = engine.state
        self.embedders = embedders
        self.max_answer_bytes = max_answer_bytes

    # ------------------------------------------------------------ plumbing
    def leader_or_redirect(self) -> RaftNode:
        """The Raft node, when it leads; otherwise 307 to the leader or 503."""
        raft = self.engine.raft
        if raft is None:
            raise Unavailable("this node is starting or stopping")
        if raft.failure is not None:
            raise StorageFailure(f"this node cannot accept writes: {raft.failure}")
        if not raft.is_leader:
            raise self._not_leader(raft.leader_id)
        return raft

    def _not_leader(self, leader_id: str | None) -> ShoalError:
        url = self.engine.member_urls().get(leader_id or "")
        if leader_id is None or url is None:
            return NoLeader("no leader is known right now (an election is under way); retry soon")
        return NotLeaderError(leader_id, url)

    def _earlier_outcome(self) -> Written | None:
        """For a retry of a keyed write already applied: its first outcome.

        Checked before validation (a retried create would otherwise meet its
        own first attempt as a conflict). Followers redirect first.
        """
        self.leader_or_redirect()
        key = request_key.get()
        remembered = (
            self.state.remembered(key, request_fingerprint.get()) if key is not None else None
        )
        if remembered is None:
            return None
        index, outcome = remembered
        return self._outcome(outcome, index)

    async def _commit(self, command: cmd.Command) -> Written:
        raft = self.leader_or_redirect()
        # Older members cannot read a fingerprint: left out until all can.
        printed = request_fingerprint.get()
        if printed is not None and not self.engine.cluster_supports(REQUEST_FINGERPRINTS):
            printed = None
        payload = cmd.encode(command, request_key.get(), printed)
        try:
            committed = await asyncio.wait_for(raft.propose(payload), WRITE_TIMEOUT)
        except HandingOver as exc:
            raise NoLeader(
                f"leadership is moving from this node to {exc.target}; nothing was written, "
                "retry in a moment"
            ) from None
        except NotLeader as exc:
            # Refused before it entered the log: nothing was written.
            raise self._not_leader(exc.leader_id) from None
        except ProposalLost:
            raise WriteNotApplied(
                "leadership changed and another write took this one's place; it was not "
                "applied, so it is safe to send again"
            ) from None
        except (RaftOutcomeUnknown, TimeoutError) as exc:
            raise OutcomeUnknown(
                f"the write may or may not have been applied ({exc or 'timed out'}); send it "
                "again with the same Idempotency-Key to apply it exactly once"
            ) from None
        except NotAccepting as exc:
            if raft.stopping is not None and raft.failure is None:
                raise Unavailable(
                    f"this node is stopping ({exc}); the write was not logged, send it to "
                    "another node"
                ) from None
            raise StorageFailure(f"the write was not made durable: {exc}") from None
        return self._outcome(committed.outcome, committed.index)

    @staticmethod
    def _outcome(outcome: object, index: int) -> Written:
        error = getattr(outcome, "error", None)
        if error is not None:
            raise APPLY_ERRORS[error](getattr(outcome, "detail", "") or error)
        return getattr(outcome, "value", None), index

    def _library(self, library_id: str) -> Library:
        library = self.state.library(library_id)
        if library is None:
            raise NotFound(f"library {library_id} does not exist")
        return library

    @contextmanager
    def _reading(self, library_id: str) -> Iterator[Library]:
        library = self._library(library_id)
        with library.lock.read(blocking=not _ON_LOOP.get()):
            yield library

    def _require(
        self, library_id: str, document_id: str | None = None, chunk_id: str | None = None
    ) -> None:
        """404 unless the library (and the document or chunk) exists.

        Runs on the event loop, so it takes no lock an apply may hold for
        long; a membership test of a dict is atomic, and apply checks again.
        """
        library = self._library(library_id)
        if document_id is not None and document_id not in library.documents:
            raise NotFound(f"document {document_id} does not exist in library {library_id}")
        if chunk_id is not None and chunk_id not in library.chunks:
            raise NotFound(f"chunk {chunk_id} does not exist in library {library_id}")

    # ----------------------------------------------------------- libraries
    async def create_library(self, body: models.LibraryCreate) -> Written:
        if (earlier := self._earlier_outcome()) is not None:
            return earlier
        model = body.embedding_model or self.embedders.default
        try:
            self.embedders.get(model)
        except UnknownModel as exc:
            raise InvalidRequest(f"embedding_model: {exc}") from None
        index_params = self._index_params(
            body.index_type, body.index_params, body.metric, body.dimension
        )
        if self.state.library_id_by_name(body.name) is not None:
            raise Conflict(f"a library named {body.name!r} already exists")
        return await self._commit(
            cmd.CreateLibrary(
                library_id=new_id(),
                name=body.name,
                description=body.description,
                dimension=body.dimension,
                metric=body.metric,
                index_type=body.index_type,
                index_params=index_params,
                embedding_model=model,
                created_at=now_us(),
            )
        )

    @staticmethod
    def _index_params(
        index_type: str, params: dict[str, Any], metric: str, dimension: int | None
    ) -> dict[str, Any]:
        """Validated index parameters, with a seed chosen here when the index draws
        random numbers: the leader decides it once and every replica uses it."""
        params = dict(params)
        if index_type in indexes.SEEDED and "seed" not in params:
            params["seed"] = secrets.randbelow(2**31)
        try:
            # The same constructor every replica calls when the entry applies.
            indexes.create(index_type, dim=dimension or 8, metric=metric, **params)
        except ValueError as exc:
            raise InvalidRequest(f"index_params for {index_type}: {exc}") from None
        return params

    async def update_library(self, library_id: str, body: models.LibraryUpdate) -> Written:
        if (earlier := self._earlier_outcome()) is not None:
            return earlier
        changes = body.model_dump(exclude_unset=True)
        for field in ("name", "index_type", "index_params"):
            if field in changes and changes[field] is None:
                raise InvalidRequest(f"{field} cannot be null")
        info = self._library(library_id).info
        if "index_type" in changes or "index_params" in changes:
            index_type = changes.get("index_type", info.index_type)
            default = info.index_params if index_type == info.index_type else {}
            changes["index_type"] = index_type
            # Defaults come from the index as it is now: apply refuses the
            # write if another one changes the index first.
            changes[IF_INDEX] = [info.index_type, dict(info.index_params)]
            changes["index_params"] = self._index_params(
                index_type, changes.get("index_params", default), info.metric,
                info.dimension,
            )  # fmt: skip
        name = changes.get("name")
        if name is not None and self.state.library_id_by_name(name) not in (None, library_id):
            raise Conflict(f"a library named {name!r} already exists")
        return await self._commit(cmd.UpdateLibrary(library_id, changes, now_us()))

    async def delete_library(self, library_id: str) -> int:
        if (earlier := self._earlier_outcome()) is not None:
            return earlier[1]
        self._library(library_id)
        _, index = await self._commit(cmd.DeleteLibrary(library_id))
        return index

    def list_libraries(self, cursor: str | None, limit: int) -> dict[str, Any]:
        after = cursors.decode(cursor, self.state.library_key, "library")
        page, more = self.state.library_page(after, limit)
        items = []
        for _, library in page:
            with library.lock.read():
                items.append(views.library_view(library))
        next_cursor = cursors.encode(page[-1][0]) if more and page else None
        return {"items": items, "next_cursor": next_cursor}

    def get_library(self, library_id: str) -> dict[str, Any]:
        with self._reading(library_id) as library:
            return views.library_view(library)

    # ------------------------------------------------------------- chunks
    def _chunk_batch(
        self, library: Library, chunks: list[models.ChunkCreate], label: str
    ) -> cmd.ChunkBatch:
        """Validate and embed chunks into a batch; runs on a worker thread."""
        info = library.info
        stamp = now_us()
        given = [n for n, chunk in enumerate(chunks) if chunk.embedding is not None]
        missing = [n for n, chunk in enumerate(chunks) if chunk.embedding is None]
        for n in missing:
            if not chunks[n].text.strip():
                raise InvalidRequest(f"{label}[{n}] has neither an embedding nor text to embed")
        dim = info.dimension
        supplied = embedded = None
        if given:
            labels = [f"{label}[{n}].embedding" for n in given]
            supplied = embedding_matrix([chunks[n].embedding or [] for n in given], labels)
            check_dimension(supplied.shape[1], dim, labels[0], info.id)
            dim = supplied.shape[1]
        if missing:
            provider = self.embedders.get(info.embedding_model)
            embedded = _embed(provider, [chunks[n].text for n in missing], dim, "search_document")
            check_dimension(embedded.shape[1], dim, f"the {provider.model} embedding", info.id)
            dim = embedded.shape[1]
        matrix = np.empty((len(chunks), dim or 0), dtype=np.float32)
        if supplied is not None:
            matrix[given] = supplied
        if embedded is not None:
            matrix[missing] = embedded
        if info.metric == "cosine":
            reject_zero_vectors(matrix, [f"{label}[{n}].embedding" for n in range(len(chunks))])
        return cmd.ChunkBatch(
            ids=new_ids(len(chunks)),
            texts=[chunk.text for chunk in chunks],
            page_numbers=[chunk.metadata.page_number for chunk in chunks],
            chunk_indexes=[chunk.metadata.chunk_index for chunk in chunks],
            created_at=[
                datetime_to_us(chunk.metadata.created_at) if chunk.metadata.created_at else stamp
                for chunk in chunks
            ],
            server_embedded=[chunk.embedding is None for chunk in chunks],
            dim=int(dim or 0),
            vectors=np.ascontiguousarray(matrix, dtype="<f4").tobytes(),
        )

    # ----------------------------------------------------------- documents
    def _document_chunks(self, body: models.DocumentCreate) -> tuple[list[models.ChunkCreate], str]:
        if body.chunks is not None and body.text is not None:
            raise InvalidRequest("send either chunks or text, not both")
        if body.text is None:
            return body.chunks or [], "chunks"
        if body.chunk_overlap >= body.chunk_size:
            raise InvalidRequest("chunk_overlap must be smaller than chunk_size")
        cap = models.MAX_CHUNKS_PER_REQUEST
        pieces = chunk_text(body.text, body.chunk_size, body.chunk_overlap, limit=cap)
        if not pieces:
            raise InvalidRequest("text has no words to index")
        if len(pieces) > cap:
            raise InvalidRequest(
                f"text makes more than {cap} chunks of at most {body.chunk_size} characters; "
                f"a request may add at most {cap} chunks: raise chunk_size, or send the "
                "text in parts (POST .../documents/{id}/chunks)"
            )
        chunks = [
            models.ChunkCreate(text=piece, metadata=models.ChunkMetadata(chunk_index=n))
            for n, piece in enumerate(pieces)
        ]
        return chunks, "text chunk"

    def _document_batch(self, library: Library, body: models.DocumentCreate) -> cmd.ChunkBatch:
        chunks, label = self._document_chunks(body)
        return self._chunk_batch(library, chunks, label)

    async def add_document(self, library_id: str, body: models.DocumentCreate) -> Written:
        if (earlier := self._earlier_outcome()) is not None:
            return earlier
        library = self._library(library_id)
        batch = await _off_loop_unless_small(self._document_batch, library, body,
                                             small=_is_small(body.chunks, body.text))  # fmt: skip
        stamp = now_us()
        meta = body.metadata
        fields = cmd.DocumentFields(
            title=meta.title,
            author=meta.author,
            created_at=datetime_to_us(meta.created_at) if meta.created_at else stamp,
            document_type=meta.document_type,
            source_url=meta.source_url,
            tags=list(dict.fromkeys(meta.tags)),
        )
        return await self._commit(cmd.AddDocument(library_id, new_id(), fields, batch, stamp))

    async def update_document(
        self, library_id: str, document_id: str, body: models.DocumentUpdate
    ) -> Written:
        if (earlier := self._earlier_outcome()) is not None:
            return earlier
        changes = body.metadata.model_dump(exclude_unset=True)
        if "created_at" in changes:
            if changes["created_at"] is None:
                raise InvalidRequest("metadata.created_at cannot be null")
            changes["created_at"] = datetime_to_us(changes["created_at"])
        if "tags" in changes:
            changes["tags"] = list(dict.fromkeys(changes["tags"] or []))
        self._require(library_id, document_id)
        return await self._commit(cmd.UpdateDocument(library_id, document_id, changes, now_us()))

    async def delete_document(self, library_id: str, document_id: str) -> int:
        if (earlier := self._earlier_outcome()) is not None:
            return earlier[1]
        self._require(library_id, document_id)
        _, index = await self._commit(cmd.DeleteDocument(library_id, document_id))
        return index

    def get_document(
        self,
        library_id: str,
        document_id: str,
        include_chunks: bool = False,
        include_embedding: bool = False,
    ) -> dict[str, Any]:
        with self._reading(library_id) as library:
            record = library.documents.get(document_id)
            if record is None:
                raise NotFound(f"document {document_id} does not exist in library {library_id}")
            if include_chunks:
                dimension = library.info.dimension or 0
                sizes = itertools.chain(
                    [answer_size.document_bytes(record)],
                    (answer_size.chunk_bytes(library.chunks[chunk_id], dimension, True,
                                             include_embedding)
                     for chunk_id in record.chunk_ids),
                )  # fmt: skip
                answer_size.check(
                    answer_size.total(sizes, self.max_answer_bytes), self.max_answer_bytes,
                    f"document {document_id} with its chunks ({len(record.chunk_ids)})",
                    "leave include_chunks out and page through its chunks with "
                    f"GET /libraries/{library_id}/documents/{document_id}/chunks",
                )  # fmt: skip
            return views.document_view(library, record, include_chunks, include_embedding)

    def list_documents(self, library_id: str, cursor: str | None, limit: int) -> dict[str, Any]:
        with self._reading(library_id) as library:
            after = cursors.decode(cursor, library.document_key, "document")
            keys, more = library.document_order.page(after, limit)
            keys, more = answer_size.page(
                keys, lambda key: answer_size.document_bytes(library.documents[key[1]]),
                self.max_answer_bytes, more,
            )  # fmt: skip
            items = [views.document_view(library, library.documents[i]) for _, i in keys]
        next_cursor = cursors.encode(keys[-1]) if more and keys else None
        return {"items": items, "next_cursor": next_cursor}

    async def add_chunks(
        self, library_id: str, document_id: str, body: models.ChunksCreate
    ) -> Written:
        if (earlier := self._earlier_outcome()) is not None:
            return earlier
        self._require(library_id, document_id)
        library = self._library(library_id)
        batch = await _off_loop_unless_small(self._chunk_batch, library, body.chunks, "chunks",
                                             small=_is_small(body.chunks, None))  # fmt: skip
        return await self._commit(cmd.AddChunks(library_id, document_id, batch, now_us()))

    def list_chunks(
        self,
        library_id: str,
        document_id: str,
        cursor: str | None,
        limit: int,
        include_embedding: bool,
    ) -> dict[str, Any]:
        with self._reading(library_id) as library:
            record = library.documents.get(document_id)
            if record is None:
                raise NotFound(f"document {document_id} does not exist in library {library_id}")
            start = 0
            if cursor is not None:
                named = library.chunks.get(cursor)
                if named is None or named.document_id != document_id:
                    raise InvalidRequest(
                        f"cursor {cursor!r:.80} is not a chunk of document {document_id}; "
                        "pass the next_cursor of the previous page of this document"
                    )
                start = record.chunk_ids.index(cursor) + 1
            ids = record.chunk_ids[start : start + limit]
            more = start + limit < len(record.chunk_ids)
            dimension = library.info.dimension or 0
            ids, more = answer_size.page(
                ids, lambda i: answer_size.chunk_bytes(library.chunks[i], dimension, True,
                                                       include_embedding),
                self.max_answer_bytes, more,
            )  # fmt: skip
            items = [views.chunk_view(library, library.chunks[i], include_embedding) for i in ids]
        return {"items": items, "next_cursor": ids[-1] if more and ids else None}

    def get_chunk(self, library_id: str, chunk_id: str, include_embedding: bool) -> dict[str, Any]:
        with self._reading(library_id) as library:
            chunk = library.chunks.get(chunk_id)
            if chunk is None:
                raise NotFound(f"chunk {chunk_id} does not exist in library {library_id}")
            return views.chunk_view(library, chunk, include_embedding)

    def _chunk_changes(
        self, library: Library, chunk_id: str, body: models.ChunkUpdate
    ) -> tuple[dict[str, Any], bytes | None]:
        """Validated changes and new vector bytes; runs on a worker thread."""
        chunk = library.chunks.get(chunk_id)
        if chunk is None:
            raise NotFound(f"chunk {chunk_id} does not exist in library {library.info.id}")
        changes: dict[str, Any] = {}
        if body.text is not None:
            changes["text"] = body.text
        if body.metadata is not None:
            meta = body.metadata.model_dump(exclude_unset=True)
            if "created_at" in meta:
                if meta["created_at"] is None:
                    raise InvalidRequest("metadata.created_at cannot be null")
                meta["created_at"] = datetime_to_us(meta["created_at"])
            changes.update(meta)
        matrix = None
        if body.embedding is not None:
            matrix = embedding_matrix([body.embedding], ["embedding"])
            check_dimension(matrix.shape[1], library.info.dimension, "embedding", library.info.id)
            changes["server_embedded"] = False
        elif body.text is not None and chunk.server_embedded:
            if not body.text.strip():
                raise InvalidRequest("text is empty and there is no embedding to keep")
            provider = self.embedders.get(library.info.embedding_model)
            matrix = _embed(provider, [body.text], library.info.dimension, "search_document")
            changes[IF_SERVER_EMBEDDED] = True
        if matrix is None:
            return changes, None
        if library.info.metric == "cosine":
            reject_zero_vectors(matrix, ["embedding"])
        return changes, np.ascontiguousarray(matrix[0], dtype="<f4").tobytes()

    async def update_chunk(
        self, library_id: str, chunk_id: str, body: models.ChunkUpdate
    ) -> Written:
        if (earlier := self._earlier_outcome()) is not None:
            return earlier
        library = self._library(library_id)
        changes, vector = await _off_loop_unless_small(self._chunk_changes, library, chunk_id, body,
                                                       small=_is_small([body], None))  # fmt: skip
        return await self._commit(cmd.UpdateChunk(library_id, chunk_id, changes, vector, now_us()))

    async def delete_chunk(self, library_id: str, chunk_id: str) -> int:
        if (earlier := self._earlier_outcome()) is not None:
            return earlier[1]
        self._require(library_id, chunk_id=chunk_id)
        _, index = await self._commit(cmd.DeleteChunk(library_id, chunk_id))
        return index

    # --------------------------------------------------------------- query
    def _query_vector(
        self, library: Library, body: models.QueryRequest
    ) -> npt.NDArray[np.float32] | None:
        info = library.info
        if (body.query_embedding is None) == (body.query_text is None):
            raise InvalidRequest("send exactly one of query_embedding and query_text")
        if body.query_embedding is not None:
            vector = embedding_matrix([body.query_embedding], ["query_embedding"])
            check_dimension(vector.shape[1], info.dimension, "query_embedding", info.id)
        else:
            if info.dimension is None:
                return None
            provider = self.embedders.get(info.embedding_model)
            self._check_text_queries(library, provider)
            vector = _embed(provider, [body.query_text or ""], info.dimension, "search_query")
        if info.metric == "cosine":
            reject_zero_vectors(vector, ["query_embedding"])
        query: npt.NDArray[np.float32] = vector[0]
        return query

    def check_text_queries(self, library_id: str) -> None:
        """422 when a text asked of this library would be compared with
        vectors its model did not make (see _check_text_queries)."""
        with self._reading(library_id) as library:
            self._check_text_queries(library, self.embedders.get(library.info.embedding_model))

    @staticmethod
    def _check_text_queries(library: Library, provider: EmbeddingProvider) -> None:
        supplied_only = 0 < library.supplied_vectors == len(library.chunks)
        if provider.only_here and supplied_only:
            raise InvalidRequest(
                f"library {library.info.id} holds only embeddings sent with its chunks, and "
                f"{provider.model}, its model, made none of them: a text would be compared "
                "with vectors of another model. Send query_embedding from the model that "
                "made them (or create the library with that embedding_model, if Shoal has "
                "it, and send text)"
            )

    def query(self, library_id: str, body: models.QueryRequest) -> dict[str, Any]:
        started = time.perf_counter()
        try:
            where = filters.parse(body.filters) if body.filters is not None else None
        except filters.FilterError as exc:
            raise InvalidFilter(str(exc)) from None
        include = set(body.include)
        with self._reading(library_id) as library:
            try:
                options = indexes.check_search_params(library.info.index_type, body.search_params)
            except indexes.InvalidParameter as exc:
                raise InvalidRequest(f"search_params: {exc}") from None
            vector = self._query_vector(library, body)
            hits: list[dict[str, Any]] = []
            if vector is not None:
                chunk_ids, scores = library.search(vector, body.k, where, options)
                if not np.isfinite(scores).all():  # a bug, never a silent null
                    raise RuntimeError(f"a search of library {library_id} scored NaN or inf")
                distances = indexes.distances_from_scores(
                    indexes.Metric(library.info.metric), scores
                )
                self._check_hits_size(library, chunk_ids, include)
                for chunk_id, score, distance in zip(chunk_ids, scores, distances, strict=True):
                    hits.append(
                        self._hit(library, chunk_id, float(score), float(distance), include)
                    )
            info = library.info
            return {
                "library_id": info.id,
                "k": body.k,
                "metric": info.metric,
                "index_type": info.index_type,
                "exact": bool(library.index.is_exact) if library.index is not None else True,
                "took_ms": round((time.perf_counter() - started) * 1000, 3),
                "results": hits,
            }

    def _check_hits_size(
        self, library: Library, chunk_ids: Sequence[str], include: set[models.Include]
    ) -> None:
        dimension = library.info.dimension or 0
        text, embedding = "text" in include, "embedding" in include
        metadata, document = "metadata" in include, "document" in include

        def sizes() -> Iterator[int]:
            for chunk_id in chunk_ids:
                chunk = library.chunks[chunk_id]
                size = answer_size.chunk_bytes(chunk, dimension, text, embedding)
                size += 100 if metadata else 0
                if document:
                    size += answer_size.metadata_bytes(library.documents[chunk.document_id])
                yield size

        limit = self.max_answer_bytes
        answer_size.check(answer_size.total(sizes(), limit), limit, f"the {len(chunk_ids)} hits",
                          "ask for a smaller k, or leave embedding, text or document out of "
                          "include")  # fmt: skip

    @staticmethod
    def _hit(
        library: Library, chunk_id: str, score: float, distance: float, include: set[models.Include]
    ) -> dict[str, Any]:
        chunk = library.chunks[chunk_id]
        hit: dict[str, Any] = {
            "chunk_id": chunk_id,
            "document_id": chunk.document_id,
            "score": score,
            "distance": distance,
        }
        if "text" in include:
            hit["text"] = chunk.text
        if "metadata" in include:
            hit["metadata"] = views.chunk_metadata(chunk)
        if "embedding" in include:
            hit["embedding"] = library.vector(chunk).tolist()
        if "document" in include:
            record = library.documents[chunk.document_id]
            hit["document"] = {"id": record.id, "metadata": views.document_metadata(record)}
        return hit


# Below these, validating (and numbering) chunks costs less than the hop to a
# worker thread and back, which also wakes a second thread to fight for the GIL.
INLINE_CHUNKS = 32
INLINE_FLOATS = 8192


def _is_small(chunks: Sequence[Any] | None, text: str | None) -> bool:
    """No text to split or embed, and few numbers to check."""
    if text is not None or len(chunks or ()) > INLINE_CHUNKS:
        return False
    floats = 0
    for chunk in chunks or ():
        if chunk.embedding is None:
            if chunk.text:  # to be embedded: a model call, maybe over the network
                return False
        else:
            floats += len(chunk.embedding)
    return floats <= INLINE_FLOATS


async def _off_loop_unless_small(work: Callable[..., T], *args: Any, small: bool) -> T:
    """``work`` on a worker thread, keeping the event loop (and with it Raft's
    heartbeats) free, unless it is small enough to run here at once."""
    if small:
        return work(*args)
    return await run_in_threadpool(work, *args)


# A query whose vector walk touches at most this many stored numbers runs on
# the event loop (about a third of a millisecond of dot products); a larger
# one does too when an HNSW walk with a modest ef bounds its work.
INLINE_QUERY_FLOATS = 1 << 20
INLINE_QUERY_EF = 256


def query_is_small(library: Library | None, body: models.QueryRequest) -> bool:
    """Cheap enough to answer on the event loop without delaying heartbeats:
    no text to embed (a model call, maybe over the network) and a bounded
    amount of vector work. A missing library is a quick 404."""
    if library is None:
        return True
    if body.query_text is not None or body.k > 100:
        return False
    dimension = library.info.dimension or 0
    rows = library.store.size if library.store is not None else 0
    if rows * dimension <= INLINE_QUERY_FLOATS:
        return True
    if library.info.index_type != "hnsw" or body.filters is not None:
        return False  # a scan, or a mask built over every row
    ef = (body.search_params or {}).get("ef", library.info.index_params.get("ef_search", 64))
    return isinstance(ef, int) and ef <= INLINE_QUERY_EF


async def read_soon(work: Callable[..., T], *args: Any) -> T:
    """A small read, on the event loop if its library is free at once,
    else on a worker thread. Saves the thread hop (and the wait for the
    GIL a woken thread pays under load) without ever letting the loop
    wait for an apply that holds the library."""
    token = _ON_LOOP.set(True)
    try:
        return work(*args)
    except LockBusy:
        pass
    finally:
        _ON_LOOP.reset(token)
    return await run_in_threadpool(work, *args)


def _embed(
    provider: EmbeddingProvider, texts: list[str], dimension: int | None, input_type: InputType
) -> npt.NDArray[np.float32]:
    try:
        return provider.embed(texts, dimension, input_type)
    except ProviderFailed as exc:
        raise EmbeddingUnavailable(
            f"the {provider.model} embedding provider failed ({exc}); nothing was written, "
            "try again later"
        ) from None
