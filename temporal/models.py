"""The values a question passes through, as plain dataclasses (Temporal's
JSON converter carries them; fields can be added compatibly)."""

from __future__ import annotations

from dataclasses import dataclass, field

WORKFLOW = "shoal-ask"


@dataclass
class AskInput:
    library_id: str
    question: str
    k: int = 5


@dataclass
class Prepared:
    question: str
    dimension: int | None
    embedding_model: str


@dataclass
class EmbedInput:
    text: str
    model: str
    dimension: int | None


@dataclass
class RetrieveInput:
    library_id: str
    vector: list[float]
    k: int
    route_key: str


@dataclass
class Hit:
    chunk_id: str
    document_id: str
    text: str
    score: float
    rerank_score: float | None = None


@dataclass
class Attempt:
    node: str
    error: str | None = None


@dataclass
class Retrieved:
    hits: list[Hit]
    served_by: str
    attempts: list[Attempt] = field(default_factory=list)


@dataclass
class RerankInput:
    question: str
    hits: list[Hit]
    k: int


@dataclass
class AnswerInput:
    question: str
    hits: list[Hit]


@dataclass
class Citation:
    chunk_id: str
    text: str


@dataclass
class Answer:
    text: str
    mode: str  # "generated" (Cohere chat) or "extractive" (sentences quoted from the sources)
    citations: list[Citation] = field(default_factory=list)


@dataclass
class AskResult:
    status: str  # "completed" or "cancelled"
    step: str  # the last step reached
    answer: str | None = None
    mode: str | None = None
    citations: list[Citation] = field(default_factory=list)
    sources: list[Hit] = field(default_factory=list)
    served_by: str | None = None
    attempts: list[Attempt] = field(default_factory=list)
