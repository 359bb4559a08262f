"""Answering without a language model: lexical rerank and extractive answers.

Used when no Cohere key is configured. The rerank blends the vector score
with how many of the question's words a passage contains; the answer quotes
the sentences that share the most words with the question and cites the
chunks they came from. It is labelled "extractive": it never writes
anything the sources do not say.
"""

from __future__ import annotations

import re

from temporal.models import Answer, Citation, Hit

_WORD = re.compile(r"\w+")
_SENTENCE = re.compile(r"(?<=[.!?])\s+")
STOP = frozenset(
    [
        "a",
        "an",
        "and",
        "are",
        "as",
        "at",
        "be",
        "by",
        "for",
        "from",
        "has",
        "have",
        "how",
        "in",
        "is",
        "it",
        "its",
        "of",
        "on",
        "or",
        "that",
        "the",
        "this",
        "to",
        "was",
        "were",
        "what",
        "when",
        "where",
        "which",
        "who",
        "why",
        "will",
        "with",
        "does",
        "do",
        "did",
        "can",
    ]
)


def terms(text: str) -> set[str]:
    return {word.lower() for word in _WORD.findall(text)} - STOP


def lexical_rerank(question: str, hits: list[Hit], k: int) -> list[Hit]:
    wanted = terms(question)
    ranked = []
    for hit in hits:
        overlap = len(wanted & terms(hit.text)) / max(1, len(wanted))
        ranked.append(Hit(hit.chunk_id, hit.document_id, hit.text, hit.score,
                          round(0.5 * overlap + 0.5 * hit.score, 6)))  # fmt: skip
    ranked.sort(key=lambda hit: (-(hit.rerank_score or 0.0), hit.chunk_id))
    return ranked[:k]


def extractive_answer(question: str, hits: list[Hit], sentences: int = 3) -> Answer:
    wanted = terms(question)
    candidates = []
    for rank, hit in enumerate(hits):
        for sentence in _SENTENCE.split(hit.text):
            sentence = sentence.strip()
            if sentence:
                overlap = len(wanted & terms(sentence))
                candidates.append((-overlap, rank, sentence, hit.chunk_id))
    if not candidates:
        return Answer("The library holds nothing that answers this.", "extractive", [])
    candidates.sort()
    chosen = candidates[:sentences]
    text = " ".join(f"{sentence} [{n + 1}]" for n, (_, _, sentence, _) in enumerate(chosen))
    citations = [Citation(chunk_id, sentence) for _, _, sentence, chunk_id in chosen]
    return Answer(text, "extractive", citations)
