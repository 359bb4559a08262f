"""Commands: the only way state changes. Each is one log entry.

Everything that could differ between replicas (ids, timestamps, embeddings)
is decided before a command is built. Vectors travel as raw little-endian
float32 bytes. The wire form is a msgpack map with an ``op`` key.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar

import msgpack
import numpy as np
import numpy.typing as npt


@dataclass(frozen=True, slots=True)
class ChunkBatch:
    """Chunks in columns; ``vectors`` holds ``len(ids) * dim`` float32 values."""

    ids: list[str]
    texts: list[str]
    page_numbers: list[int | None]
    chunk_indexes: list[int | None]
    created_at: list[int]
    server_embedded: list[bool]
    dim: int
    vectors: bytes

    def matrix(self) -> npt.NDArray[np.float32]:
        return np.frombuffer(self.vectors, dtype="<f4").reshape(len(self.ids), self.dim)

    def __len__(self) -> int:
        return len(self.ids)


@dataclass(frozen=True, slots=True)
class DocumentFields:
    title: str | None = None
    author: str | None = None
    created_at: int = 0
    document_type: str | None = None
    source_url: str | None = None
    tags: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Command:
    op: ClassVar[str] = ""


@dataclass(frozen=True, slots=True)
class CreateLibrary(Command):
    op: ClassVar[str] = "create_library"
    library_id: str
    name: str
    description: str | None
    dimension: int | None
    metric: str
    index_type: str
    index_params: dict[str, Any]
    embedding_model: str
    created_at: int


@dataclass(frozen=True, slots=True)
class UpdateLibrary(Command):
    op: ClassVar[str] = "update_library"
    library_id: str
    changes: dict[str, Any]
    updated_at: int


@dataclass(frozen=True, slots=True)
class DeleteLibrary(Command):
    op: ClassVar[str] = "delete_library"
    library_id: str


@dataclass(frozen=True, slots=True)
class AddDocument(Command):
    op: ClassVar[str] = "add_document"
    library_id: str
    document_id: str
    fields: DocumentFields
    chunks: ChunkBatch
    created_at: int


@dataclass(frozen=True, slots=True)
class UpdateDocument(Command):
    op: ClassVar[str] = "update_document"
    library_id: str
    document_id: str
    changes: dict[str, Any]
    updated_at: int


@dataclass(frozen=True, slots=True)
class DeleteDocument(Command):
    op: ClassVar[str] = "delete_document"
    library_id: str
    document_id: str


@dataclass(frozen=True, slots=True)
class AddChunks(Command):
    op: ClassVar[str] = "add_chunks"
    library_id: str
    document_id: str
    chunks: ChunkBatch
    updated_at: int


@dataclass(frozen=True, slots=True)
class UpdateChunk(Command):
    op: ClassVar[str] = "update_chunk"
    library_id: str
    chunk_id: str
    changes: dict[str, Any]
    # Raw float32 bytes of the new embedding, when it changes.
    vector: bytes | None
    updated_at: int


@dataclass(frozen=True, slots=True)
class DeleteChunk(Command):
    op: ClassVar[str] = "delete_chunk"
    library_id: str
    chunk_id: str


_COMMANDS: dict[str, type[Command]] = {
    cls.op: cls
    for cls in (
        CreateLibrary,
        UpdateLibrary,
        DeleteLibrary,
        AddDocument,
        UpdateDocument,
        DeleteDocument,
        AddChunks,
        UpdateChunk,
        DeleteChunk,
    )
}
_NESTED: dict[str, type[Any]] = {"chunks": ChunkBatch, "fields": DocumentFields}


def encode(
    command: Command, request_key: str | None = None, fingerprint: str | None = None
) -> bytes:
    """``fingerprint``: of the keyed request (see node.idempotency), so a key
    sent again with another request is told apart from a retry."""
    body: dict[str, Any] = {"op": command.op}
    if request_key is not None:
        body["rid"] = request_key
        if fingerprint is not None:
            body["rfp"] = fingerprint
    for item in dataclasses.fields(command):
        value = getattr(command, item.name)
        if dataclasses.is_dataclass(value):
            value = {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
        body[item.name] = value
    return msgpack.packb(body, use_bin_type=True)


def decode(payload: bytes) -> tuple[Command, str | None]:
    """The command and the Idempotency-Key it was sent with, if any."""
    command, request_key, _ = decode_keyed(payload)
    return command, request_key


def decode_keyed(payload: bytes) -> tuple[Command, str | None, str | None]:
    """The command, its Idempotency-Key and the keyed request's fingerprint
    (None for commands logged before fingerprints were)."""
    body = msgpack.unpackb(payload, raw=False, strict_map_key=False)
    if not isinstance(body, dict) or body.get("op") not in _COMMANDS:
        raise ValueError("not a Shoal command")
    cls = _COMMANDS[body.pop("op")]
    request_key = body.pop("rid", None)
    fingerprint = body.pop("rfp", None)
    for name, nested in _NESTED.items():
        if name in body:
            body[name] = nested(**body[name])
    return cls(**body), request_key, fingerprint
