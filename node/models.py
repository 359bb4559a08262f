"""Request and response bodies of the REST API."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field
from pydantic import Strict as StrictValue
from pydantic_core import PydanticCustomError

from node.timeutil import check_storable

Metric = Literal["cosine", "dot", "l2"]
IndexType = Literal["brute_force", "kd_tree", "lsh", "hnsw"]
Include = Literal["text", "metadata", "embedding", "document"]


def _storable(moment: datetime) -> datetime:
    try:
        return check_storable(moment)
    except ValueError as exc:
        raise PydanticCustomError("instant_out_of_range", str(exc)) from None


def _written_out(value: Any) -> Any:
    """A number would be taken as seconds since 1970: 0 became a date."""
    if isinstance(value, int | float):
        raise PydanticCustomError(
            "instant_as_number", "must be an ISO 8601 date-time such as 2024-05-01T12:00:00Z"
        )
    return value


# A datetime the views can show again (years 1 to 9999 in UTC); before this
# check, one outside was logged and then failed on every replica.
Instant = Annotated[datetime, BeforeValidator(_written_out), AfterValidator(_storable)]
# An integer, not a boolean, float or string that looks like one.
Integer = Annotated[int, StrictValue()]

DEFAULT_INCLUDE: tuple[Include, ...] = ("text", "metadata")
MAX_CHUNKS_PER_REQUEST = 10_000
MAX_TEXT = 1_000_000
MAX_DIMENSION = 8192
# Filters compare page numbers and chunk indexes as float64, exact up to 2**53.
MAX_POSITION = 2**53 - 1


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LibraryCreate(Strict):
    name: str = Field(min_length=1, max_length=200)
    description: str | None = Field(default=None, max_length=10_000)
    dimension: Integer | None = Field(default=None, ge=1, le=MAX_DIMENSION)
    metric: Metric = "cosine"
    index_type: IndexType = "brute_force"
    index_params: dict[str, Any] = Field(default_factory=dict)
    embedding_model: str | None = Field(default=None, max_length=200)


class LibraryUpdate(Strict):
    name: str | None = Field(default=None, min_length=1, max_length=200)
    description: str | None = Field(default=None, max_length=10_000)
    index_type: IndexType | None = Field(
        default=None, description="Switch index: the library is re-indexed in place"
    )
    index_params: dict[str, Any] | None = None


class Library(BaseModel):
    id: str
    name: str
    description: str | None
    dimension: int | None
    metric: Metric
    index_type: IndexType
    index_params: dict[str, Any]
    embedding_model: str
    created_at: str
    updated_at: str
    document_count: int
    chunk_count: int


class DocumentMetadata(Strict):
    title: str | None = Field(default=None, max_length=2_000)
    author: str | None = Field(default=None, max_length=2_000)
    created_at: Instant | None = None
    document_type: str | None = Field(default=None, max_length=200)
    source_url: str | None = Field(default=None, max_length=8_000)
    tags: list[str] = Field(default_factory=list, max_length=1_000)


class DocumentMetadataUpdate(Strict):
    title: str | None = Field(default=None, max_length=2_000)
    author: str | None = Field(default=None, max_length=2_000)
    created_at: Instant | None = None
    document_type: str | None = Field(default=None, max_length=200)
    source_url: str | None = Field(default=None, max_length=8_000)
    tags: list[str] | None = Field(default=None, max_length=1_000)


class ChunkMetadata(Strict):
    page_number: Integer | None = Field(default=None, ge=0, le=MAX_POSITION)
    chunk_index: Integer | None = Field(default=None, ge=0, le=MAX_POSITION)
    created_at: Instant | None = None


class ChunkCreate(Strict):
    text: str = Field(default="", max_length=MAX_TEXT)
    embedding: list[float] | None = None
    metadata: ChunkMetadata = Field(default_factory=ChunkMetadata)


class ChunksCreate(Strict):
    chunks: list[ChunkCreate] = Field(min_length=1, max_length=MAX_CHUNKS_PER_REQUEST)


class DocumentCreate(Strict):
    metadata: DocumentMetadata = Field(default_factory=DocumentMetadata)
    chunks: list[ChunkCreate] | None = Field(default=None, max_length=MAX_CHUNKS_PER_REQUEST)
    text: str | None = Field(default=None, max_length=10 * MAX_TEXT)
    chunk_size: Integer = Field(default=800, ge=50, le=20_000)
    chunk_overlap: Integer = Field(default=100, ge=0, le=10_000)


class DocumentUpdate(Strict):
    metadata: DocumentMetadataUpdate


class ChunkUpdate(Strict):
    text: str | None = Field(default=None, max_length=MAX_TEXT)
    embedding: list[float] | None = None
    metadata: ChunkMetadata | None = None


class Chunk(BaseModel):
    id: str
    library_id: str
    document_id: str
    text: str
    metadata: dict[str, Any]
    updated_at: str
    embedding: list[float] | None = Field(default=None, exclude_if=lambda v: v is None)


class Document(BaseModel):
    id: str
    library_id: str
    metadata: dict[str, Any]
    chunk_count: int
    chunk_ids: list[str]
    created_at: str
    updated_at: str
    chunks: list[Chunk] | None = Field(default=None, exclude_if=lambda v: v is None)


class Page(BaseModel):
    next_cursor: str | None = Field(
        description="Pass as ?cursor= to get the next page; null on the last page."
    )


class LibraryPage(Page):
    items: list[Library]


class DocumentPage(Page):
    items: list[Document]


class ChunkPage(Page):
    items: list[Chunk]


class ChunkList(BaseModel):
    items: list[Chunk]


class QueryRequest(Strict):
    query_embedding: list[float] | None = None
    query_text: str | None = Field(default=None, min_length=1, max_length=MAX_TEXT)
    k: Integer = Field(default=10, ge=1, le=1_000)
    filters: dict[str, Any] | None = None
    search_params: dict[str, Any] = Field(
        default_factory=dict, description="Index-specific, e.g. {'ef': 128} for hnsw"
    )
    include: list[Include] = Field(default_factory=lambda: list(DEFAULT_INCLUDE))


class QueryHit(BaseModel):
    chunk_id: str
    document_id: str
    score: float
    distance: float
    text: str | None = Field(default=None, exclude_if=lambda v: v is None)
    metadata: dict[str, Any] | None = Field(default=None, exclude_if=lambda v: v is None)
    embedding: list[float] | None = Field(default=None, exclude_if=lambda v: v is None)
    document: dict[str, Any] | None = Field(default=None, exclude_if=lambda v: v is None)


class QueryResponse(BaseModel):
    library_id: str
    k: int
    metric: Metric
    index_type: IndexType
    exact: bool
    took_ms: float
    results: list[QueryHit]
