"""``local-hash-v1``: deterministic feature hashing, no model and no network.

Words and word pairs are hashed (blake2b, the same on every machine) into a
signed, L2-normalised vector. It ranks by shared vocabulary, not meaning; it
exists so a node works with no key and no weights.
"""

from __future__ import annotations

import hashlib
import re
from functools import lru_cache

import numpy as np
import numpy.typing as npt

from node.embeddings.base import InputType

DEFAULT_LOCAL_DIMENSION = 384
_WORD = re.compile(r"\w+", re.UNICODE)


@lru_cache(maxsize=1 << 16)
def _feature_hash(token: str) -> int:
    return int.from_bytes(hashlib.blake2b(token.encode(), digest_size=8).digest(), "little")


class LocalHashEmbedder:
    only_here = True
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
