"""Cohere embeddings through the official SDK.

Texts go in batches of 96 (Cohere's limit) with the right ``input_type``
(``search_document`` when storing, ``search_query`` when asking). 429s and
5xx answers are retried by the SDK with exponential backoff, honouring
Retry-After; what still fails becomes :class:`ProviderFailed`. A bounded LRU
cache keyed by (model, input type, text) saves repeat calls.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

import httpx
import numpy as np
import numpy.typing as npt

from node.embeddings.base import InputType, ProviderFailed

BATCH = 96
DEFAULT_MODEL = "embed-english-v3.0"


class CohereEmbedder:
    def __init__(
        self,
        api_key: str,
        model: str = DEFAULT_MODEL,
        base_url: str | None = None,
        max_retries: int = 4,
        timeout: float = 30.0,
        cache_entries: int = 10_000,
    ) -> None:
        import cohere

        self.model = model
        self.only_here = False
        self._http = httpx.Client(timeout=timeout)
        self._client = cohere.ClientV2(
            api_key=api_key, base_url=base_url, max_retries=max_retries, timeout=timeout,
            httpx_client=self._http,
        )  # fmt: skip
        self._cache: OrderedDict[tuple[str, str], npt.NDArray[np.float32]] = OrderedDict()
        self._cache_entries = cache_entries
        self._lock = threading.Lock()
        self.calls = 0

    def embed(
        self, texts: list[str], dimension: int | None, input_type: InputType
    ) -> npt.NDArray[np.float32]:
        rows: list[npt.NDArray[np.float32] | None] = []
        missing: list[int] = []
        with self._lock:
            for n, text in enumerate(texts):
                cached = self._cache.get((input_type, text))
                if cached is not None:
                    self._cache.move_to_end((input_type, text))
                else:
                    missing.append(n)
                rows.append(cached)
        for start in range(0, len(missing), BATCH):
            part = missing[start : start + BATCH]
            vectors = self._call([texts[n] for n in part], input_type)
            with self._lock:
                for n, vector in zip(part, vectors, strict=True):
                    rows[n] = vector
                    self._cache[(input_type, texts[n])] = vector
                while len(self._cache) > self._cache_entries:
                    self._cache.popitem(last=False)
        if not texts:
            return np.empty((0, dimension or 0), dtype=np.float32)
        return np.vstack([row for row in rows if row is not None]).astype(np.float32)

    def close(self) -> None:
        self._http.close()

    def _call(self, texts: list[str], input_type: InputType) -> list[npt.NDArray[np.float32]]:
        import cohere

        self.calls += 1
        try:
            response = self._client.embed(
                model=self.model, input_type=input_type, texts=texts, embedding_types=["float"]
            )
        except cohere.core.api_error.ApiError as exc:
            raise ProviderFailed(f"Cohere embed answered {exc.status_code}: {exc.body}") from None
        except Exception as exc:  # the SDK's transport errors are httpx's
            raise ProviderFailed(f"Cohere embed failed: {exc!r}") from None
        floats = response.embeddings.float_
        if floats is None or len(floats) != len(texts):
            raise ProviderFailed("Cohere returned no float embeddings for some texts")
        return [np.asarray(vector, dtype=np.float32) for vector in floats]
