"""Embedding providers. The leader embeds before logging; followers never do.

``local-hash-v1`` is deterministic feature hashing of words and word pairs
into a signed, L2-normalised vector: no model, no network, identical on
every machine. It ranks by shared vocabulary, not meaning; it exists so a
node works with no key and no weights.
"""

from __future__ import annotations

import hashlib
import re
from functools import lru_cache
from typing import Literal, Protocol

import numpy as np
import numpy.typing as npt

InputType = Literal["search_document", "search_query"]
DEFAULT_LOCAL_DIMENSION = 384
_WORD = re.compile(r"\w+", re.UNICODE)


class EmbeddingProvider(Protocol):
    model: str

    def embed(
        self, texts: list[str], dimension: int | None, input_type: InputType
    ) -> npt.NDArray[np.float32]:
        """One row per text. ``dimension`` is the library's, when it has one."""


@lru_cache(maxsize=1 << 16)
def _feature_hash(token: str) -> int:
    return int.from_bytes(hashlib.blake2b(token.encode(), digest_size=8).digest(), "little")


class LocalHashEmbedder:
    model = "local-hash-v1"

    def embed(
        self, texts: list[str], dimension: int | None, input_type: InputType
    ) -> npt.NDArray[np.float32]:
        dim = dimension or DEFAULT_LOCAL_DIMENSION
        out = np.zeros((len(texts), dim), dtype=np.float32)
        for row, text in enumerate(texts):
            words = [word.lower() for word in _WORD.findall(text)]
            features = words + [f"{a} {b}" for a, b in zip(words, words[1:], strict=False)]
            for feature in features:
                hashed = _feature_hash(feature)
                sign = 1.0 if hashed >> 63 else -1.0
                weight = 1.0 if " " not in feature else 0.5
                out[row, hashed % dim] += sign * weight
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        np.divide(out, norms, out=out, where=norms > 0)
        return out


class UnknownModel(ValueError):
    pass


class EmbeddingRegistry:
    """Providers by model name; a library names its model at creation."""

    def __init__(self, providers: list[EmbeddingProvider], default: str) -> None:
        self._providers = {provider.model: provider for provider in providers}
        if default not in self._providers:
            raise ValueError(f"default model {default!r} has no provider")
        self.default = default

    @property
    def models(self) -> list[str]:
        return sorted(self._providers)

    def get(self, model: str) -> EmbeddingProvider:
        provider = self._providers.get(model)
        if provider is None:
            raise UnknownModel(
                f"no embedding provider for model {model!r}; available: {', '.join(self.models)}"
            )
        return provider


def default_registry() -> EmbeddingRegistry:
    return EmbeddingRegistry([LocalHashEmbedder()], default=LocalHashEmbedder.model)
