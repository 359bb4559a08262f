"""Embedding providers. The leader embeds before logging; followers never do.

- ``local-hash-v1`` (default without a key): deterministic, no network;
- Cohere (``embed-english-v3.0`` by default) when a key is configured;
- ``all-MiniLM-L6-v2`` when the ``minilm`` extra is installed.
"""

from __future__ import annotations

from node.embeddings import minilm
from node.embeddings.base import (
    EmbeddingProvider,
    EmbeddingRegistry,
    InputType,
    ProviderFailed,
    UnknownModel,
)
from node.embeddings.cohere_provider import DEFAULT_MODEL as COHERE_DEFAULT_MODEL
from node.embeddings.cohere_provider import CohereEmbedder
from node.embeddings.local_hash import DEFAULT_LOCAL_DIMENSION, LocalHashEmbedder


def build_registry(
    cohere_api_key: str | None = None,
    cohere_model: str = COHERE_DEFAULT_MODEL,
    cohere_base_url: str | None = None,
) -> EmbeddingRegistry:
    """Every provider this process can use; Cohere is the default when keyed."""
    providers: list[EmbeddingProvider] = [LocalHashEmbedder()]
    default = LocalHashEmbedder.model
    if cohere_api_key:
        providers.append(CohereEmbedder(cohere_api_key, cohere_model, cohere_base_url))
        default = cohere_model
    if minilm.available():
        providers.append(minilm.MiniLMEmbedder())
    return EmbeddingRegistry(providers, default)


def default_registry() -> EmbeddingRegistry:
    return build_registry()


__all__ = [
    "COHERE_DEFAULT_MODEL",
    "DEFAULT_LOCAL_DIMENSION",
    "CohereEmbedder",
    "EmbeddingProvider",
    "EmbeddingRegistry",
    "InputType",
    "LocalHashEmbedder",
    "ProviderFailed",
    "UnknownModel",
    "build_registry",
    "default_registry",
]
