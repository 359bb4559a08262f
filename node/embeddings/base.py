"""What an embedding provider is, and the registry libraries pick them from."""

from __future__ import annotations

from typing import Literal, Protocol

import numpy as np
import numpy.typing as npt

InputType = Literal["search_document", "search_query"]


class EmbeddingProvider(Protocol):
    model: str
    # True when no one can make this model's vectors outside a Shoal node
    # (so vectors a caller sent cannot be this model's).
    only_here: bool

    def embed(
        self, texts: list[str], dimension: int | None, input_type: InputType
    ) -> npt.NDArray[np.float32]:
        """One row per text. ``dimension`` is the library's, when it has one."""


class UnknownModel(ValueError):
    pass


class ProviderFailed(Exception):
    """The provider could not embed (after its retries); nothing was written."""


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

    def close(self) -> None:
        """Release what providers hold (HTTP connections)."""
        for provider in self._providers.values():
            close = getattr(provider, "close", None)
            if close is not None:
                close()

    def get(self, model: str) -> EmbeddingProvider:
        provider = self._providers.get(model)
        if provider is None:
            raise UnknownModel(
                f"no embedding provider for model {model!r}; available: {', '.join(self.models)}"
            )
        return provider
