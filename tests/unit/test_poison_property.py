"""Whatever a client sends, a write is refused before it is logged, or every
replica applies it alike (issue 11, poison entries).

Random requests, valid and not, are parsed by the request models and handled
by the Service methods the routes call. A stand-in for Raft commits each
accepted command at once and applies it to three state machines in log order:
the leader's (which the service reads) and two followers'.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, cast

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

import indexes
from node import models
from node.embeddings import build_registry
from node.errors import APPLY_ERRORS, ShoalError
from node.idempotency import request_key
from node.service import Service
from node.store import views
from node.store.digest import state_digest
from node.store.state import StateMachine
from node.timeutil import parse_instant, to_iso
from replication.interfaces import Committed
from wal import EntryKind, LogEntry


class ThreeReplicas:
    """Engine and consensus of a leader whose every proposal commits at once."""

    def __init__(self) -> None:
        self.machines = [StateMachine() for _ in range(3)]
        self.state = self.machines[0]
        self.raft = self
        self.is_leader = True
        self.failure: str | None = None
        self.log: list[bytes] = []

    async def propose(self, payload: bytes) -> Committed:
        self.log.append(payload)
        entry = LogEntry(len(self.log), 1, EntryKind.COMMAND, payload)
        # Like the runner: only the leader builds the views it answers with.
        outcomes = [
            machine.apply(entry, want_result=n == 0) for n, machine in enumerate(self.machines)
        ]
        errors = {(outcome.error, outcome.detail) for outcome in outcomes}
        assert len(errors) == 1, f"replicas disagree on entry {entry.index}: {errors}"
        assert outcomes[0].error != "ApplyFailed", outcomes[0].detail
        return Committed(entry.index, entry.term, outcomes[0])


# ------------------------------------------------------------------ values
def mostly(good: st.SearchStrategy[Any], bad: st.SearchStrategy[Any], odds: int = 4) -> Any:
    """``good``, and ``bad`` about once in ``odds + 1`` draws."""
    return st.integers(0, odds).flatmap(lambda n: bad if n == 0 else good)


def optional(**fields: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries({}, optional=fields)


NUMBERS = st.one_of(
    st.integers(-3, 300),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([200.5, 0.5, 1.0, 64.0, -0.0]),
)
ODD_VALUES = st.one_of(st.booleans(), st.none(), st.text(max_size=3), st.just([1]))
PARAM_NAMES = {
    "brute_force": [],
    "kd_tree": ["leaf_size"],
    "lsh": ["tables", "bits", "probes", "seed"],
    "hnsw": ["M", "ef_construction", "ef_search", "seed", "repair_threshold", "exact_below"],
}
GOOD_PARAMS = {
    "leaf_size": st.integers(1, 64),
    "tables": st.integers(1, 16),
    "bits": st.integers(1, 24),
    "probes": st.integers(0, 32),
    "seed": st.integers(0, 2**63 - 1),
    "M": st.integers(2, 32),
    "ef_construction": st.integers(1, 300),
    "ef_search": st.integers(1, 300),
    "repair_threshold": st.floats(0.01, 1),
    "exact_below": st.floats(0, 1),
}
# Now and then a fraction where an integer is meant (ef_construction 200.5
# once poisoned the log), or anything at all.
FRACTIONS = st.floats(0.5, 300).filter(lambda x: not x.is_integer())
BAD_PARAM = FRACTIONS | NUMBERS | ODD_VALUES


def index_params(kind: str) -> st.SearchStrategy[dict[str, Any]]:
    values = {name: mostly(GOOD_PARAMS[name], BAD_PARAM, odds=3) for name in PARAM_NAMES[kind]}
    return mostly(optional(**values), st.fixed_dictionaries({"colour": BAD_PARAM}), odds=10)


SEARCH_PARAMS = mostly(
    st.just({}), st.dictionaries(st.sampled_from(["ef", "probes", "k"]), NUMBERS, max_size=2)
)
# Instants at the ends of what a datetime shows, inside and just outside once
# converted to UTC (0001-01-01T00:00:00+14:00 once poisoned the log).
INSIDE = [
    "0001-01-01T00:00:00Z", "9999-12-31T23:59:59.999999Z", "9999-12-31T23:59:59.999999",
    "0001-01-01", "0001-01-01T23:59:59+14:00", "9999-12-31T00:00:00-14:00", "2024-05-01",
]  # fmt: skip
OUTSIDE = [
    "0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00", "9999-12-31T23:59:59.999999-00:01",
]  # fmt: skip
ZONES = [UTC, timezone(timedelta(hours=14)), timezone(timedelta(hours=-14))]
INSTANTS = st.one_of(
    st.sampled_from(INSIDE),
    st.sampled_from(OUTSIDE),
    st.datetimes(timezones=st.sampled_from(ZONES)).map(datetime.isoformat),
)
ODD_FLOATS = st.sampled_from([0.0, float("nan"), float("inf"), 3e38, 1e39, 1e-45, -1e-30])
FLOATS = mostly(st.floats(-2, 2), ODD_FLOATS, odds=15)
DIMENSIONS = st.sampled_from([0, 1, 2, 3, 5])
ODD_TEXT = st.sampled_from(["", " ", "\ud800 lone surrogate"])
TEXTS = mostly(st.sampled_from(["a short text.", "Two sentences here. And one more!"]), ODD_TEXT)
POSITIONS = mostly(st.none() | st.integers(0, 5), st.integers(-1, 0) | st.integers(2**62, 2**70))
CHUNK_METADATA = optional(page_number=POSITIONS, chunk_index=POSITIONS, created_at=INSTANTS)
DOCUMENT_METADATA = optional(
    title=mostly(st.none() | st.text(max_size=4), ODD_TEXT),
    created_at=INSTANTS,
    tags=st.lists(st.text(max_size=2)),
)
LIBRARY = optional(
    dimension=mostly(st.sampled_from([2, 3]), DIMENSIONS),
    metric=st.sampled_from(["cosine", "dot", "l2"]),
)
INDEX_TYPES = st.sampled_from(indexes.KINDS)


def embeddings(dimension: int | None) -> st.SearchStrategy[list[float] | None]:
    """Mostly of the library's dimension (3 when it has none yet)."""
    sizes = mostly(st.just(dimension or 3), DIMENSIONS)
    vectors = sizes.flatmap(lambda size: st.lists(FLOATS, min_size=size, max_size=size))
    zeros = sizes.map(lambda size: [0.0] * size)
    return mostly(st.none() | vectors, zeros, odds=6)


# --------------------------------------------------------------- requests
# Bulk bodies are parsed from bytes by pydantic (node.body); the others by
# FastAPI, which runs json.loads and then validates the objects.
FROM_BYTES = (models.DocumentCreate, models.ChunksCreate, models.QueryRequest)


def parsed(model: type[BaseModel], body: dict[str, Any]) -> Any:
    """The body as its route receives it, sent as JSON text (NaN and all)."""
    text = json.dumps(body)
    if model in FROM_BYTES:
        return model.model_validate_json(text)
    return model.model_validate(json.loads(text))


class Session:
    """Sends drawn requests to one service and remembers the ids it was given."""

    def __init__(self, data: st.DataObject) -> None:
        self.data = data
        self.replicas = ThreeReplicas()
        self.service = Service(cast(Any, self.replicas), build_registry())
        self.documents: list[tuple[str, str]] = []
        self.chunk_ids: list[tuple[str, str]] = []
        self.created: list[str] = []
        self.sent = 0
        self.rng = data.draw(st.randoms(use_true_random=False))

    def draw(self, strategy: st.SearchStrategy[Any]) -> Any:
        return self.data.draw(strategy)

    def dimension(self, library_id: str) -> int | None:
        library = self.replicas.state.library(library_id)
        return library.info.dimension if library is not None else None

    def chunk(self, library_id: str) -> st.SearchStrategy[dict[str, Any]]:
        embedding = embeddings(self.dimension(library_id))
        return st.fixed_dictionaries(
            {"text": TEXTS, "embedding": embedding}, optional={"metadata": CHUNK_METADATA}
        )

    def chunks(self, library_id: str) -> st.SearchStrategy[list[dict[str, Any]]]:
        return mostly(st.lists(self.chunk(library_id), min_size=1, max_size=3), st.just([]))

    def known(self, items: list[Any], missing: Any) -> Any:
        """One of ``items``; now and then, or when there are none, ``missing``.

        Structure comes from a seeded Random (hypothesis repeats its own draws
        within an example, which would send most requests to one id)."""
        if not items or self.rng.random() < 0.08:
            return missing
        return self.rng.choice(items)

    def library(self) -> str:
        live = [id_ for id_ in self.created if id_ in self.replicas.state.libraries]
        return str(self.known(live, "missing-library"))

    def pick(self, items: list[tuple[str, str]]) -> tuple[str, str]:
        return cast(tuple[str, str], self.known(items, (self.library(), "missing-item")))

    def name(self) -> str:
        """A new name; now and then one in use (a conflict)."""
        taken = sorted(library.info.name for library in self.replicas.state.libraries.values())
        if taken and self.rng.random() < 0.15:
            return self.rng.choice(taken)
        return f"lib-{self.sent}"

    async def send(self, sender: Callable[[Session], Awaitable[None]]) -> None:
        self.sent += 1
        # Some writes carry an Idempotency-Key: their outcomes are remembered
        # by every replica and counted in the digest.
        request_key.set(f"key-{self.sent}" if self.rng.random() < 0.3 else None)
        try:
            await sender(self)
        except (ValidationError, ShoalError) as refused:
            status = getattr(refused, "status", 422)
            assert status < 500, f"{type(refused).__name__}: {refused}"

    async def step(self) -> None:
        await self.send(self.rng.choice(SENDERS))

    async def create_library(self) -> None:
        kind = self.draw(INDEX_TYPES)
        body = {"name": self.name(), "index_type": kind, **self.draw(LIBRARY)}
        body["index_params"] = self.draw(index_params(kind))
        library, _ = await self.service.create_library(parsed(models.LibraryCreate, body))
        self.created.append(library["id"])

    async def update_library(self) -> None:
        changes: dict[str, Any] = {}
        if self.rng.random() < 0.3:
            changes["name"] = self.name()
        if self.rng.random() < 0.5:
            changes["index_type"] = self.draw(INDEX_TYPES)
        if self.rng.random() < 0.7:
            library = self.replicas.state.library(self.library())
            kind = changes.get("index_type", library.info.index_type if library else "hnsw")
            changes["index_params"] = self.draw(index_params(kind))
        body = parsed(models.LibraryUpdate, changes)
        await self.service.update_library(self.library(), body)

    async def delete_library(self) -> None:
        if self.rng.random() < 0.3:  # rarely: keep libraries to write into
            await self.service.delete_library(self.library())

    async def add_document(self) -> None:
        library_id = self.library()
        chunks = self.chunks(library_id)
        document = st.one_of(
            optional(metadata=DOCUMENT_METADATA, chunks=chunks),
            optional(metadata=DOCUMENT_METADATA, text=TEXTS),
        )
        body = parsed(models.DocumentCreate, self.draw(document))
        document, _ = await self.service.add_document(library_id, body)
        self.documents.append((library_id, document["id"]))
        self.chunk_ids += [(library_id, chunk_id) for chunk_id in document["chunk_ids"]]

    async def update_document(self) -> None:
        body = parsed(models.DocumentUpdate, {"metadata": self.draw(DOCUMENT_METADATA)})
        await self.service.update_document(*self.pick(self.documents), body)

    async def delete_document(self) -> None:
        await self.service.delete_document(*self.pick(self.documents))

    async def add_chunks(self) -> None:
        library_id, document_id = self.pick(self.documents)
        body = parsed(models.ChunksCreate, {"chunks": self.draw(self.chunks(library_id))})
        created, _ = await self.service.add_chunks(library_id, document_id, body)
        self.chunk_ids += [(library_id, chunk["id"]) for chunk in created]

    async def update_chunk(self) -> None:
        library_id, chunk_id = self.pick(self.chunk_ids)
        embedding = embeddings(self.dimension(library_id))
        body = self.draw(optional(text=TEXTS, embedding=embedding, metadata=CHUNK_METADATA))
        await self.service.update_chunk(library_id, chunk_id, parsed(models.ChunkUpdate, body))

    async def delete_chunk(self) -> None:
        await self.service.delete_chunk(*self.pick(self.chunk_ids))

    async def query(self) -> None:
        library_id = self.library()
        query = st.fixed_dictionaries(
            {"query_embedding": embeddings(self.dimension(library_id)).filter(bool)},
            optional={"k": st.integers(0, 4), "search_params": SEARCH_PARAMS},
        )
        self.service.query(library_id, parsed(models.QueryRequest, self.draw(query)))


SENDERS = [
    Session.create_library, Session.update_library, Session.delete_library,
    Session.add_document, Session.add_document, Session.add_document, Session.update_document,
    Session.delete_document, Session.add_chunks, Session.add_chunks, Session.update_chunk,
    Session.update_chunk, Session.delete_chunk, Session.query, Session.query,
]  # fmt: skip


def every_view(machine: StateMachine) -> None:
    """Everything a list or get request would render, on one replica; every
    instant shown reads back as the one stored."""
    for library in machine.libraries.values():
        views.library_view(library)
        for record in library.documents.values():
            views.document_view(library, record, include_chunks=True, include_embedding=True)
            instants = [record.fields.created_at]
            instants += [library.chunks[chunk_id].created_at for chunk_id in record.chunk_ids]
            for instant in instants:
                assert parse_instant(to_iso(instant)) == instant


@settings(
    max_examples=120,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(st.data())
def test_no_request_poisons_the_log(data: st.DataObject) -> None:
    session = Session(data)

    async def run() -> None:
        for _ in range(data.draw(st.integers(1, 3))):
            await session.send(Session.create_library)
        for _ in range(data.draw(st.integers(6, 20))):
            await session.step()

    asyncio.run(run())
    machines = session.replicas.machines
    for machine in machines:
        every_view(machine)
        assert machine.applied_index == len(session.replicas.log)
    assert len({state_digest(machine) for machine in machines}) == 1
    # every remembered outcome is an answer the service can give again
    errors = {outcome.error for _, outcome in machines[0].requests.records()}
    assert errors <= {None, *APPLY_ERRORS}
