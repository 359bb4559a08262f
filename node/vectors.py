"""Turning JSON number lists into checked float32 matrices.

Every problem is reported with the place it was found (``chunks[3].embedding``)
so the person sending the request can fix it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from node.errors import DimensionMismatch, InvalidRequest
from node.models import MAX_DIMENSION

FloatMatrix = npt.NDArray[np.float32]
# Distances are computed in 32-bit floats (largest about 3.4e38): with every
# squared length below this, even |a - b|^2 <= 4 * 1e37 stays finite.
MAX_SQUARED_LENGTH = 1e37


def embedding_matrix(embeddings: Sequence[Sequence[float]], labels: Sequence[str]) -> FloatMatrix:
    """Rows of equal, non-zero length with finite float32 values."""
    lengths = [len(vector) for vector in embeddings]
    for label, length in zip(labels, lengths, strict=True):
        if length == 0:
            raise InvalidRequest(f"{label} is empty; an embedding needs at least one value")
    if len(set(lengths)) > 1:
        first = lengths[0]
        odd = next(n for n, length in enumerate(lengths) if length != first)
        raise DimensionMismatch(
            f"{labels[odd]} has {lengths[odd]} values but {labels[0]} has {first}; "
            "all embeddings in a request must have the same dimension"
        )
    if lengths and lengths[0] > MAX_DIMENSION:
        # Checked here too: a library made without a dimension takes its
        # width from its first vectors.
        raise InvalidRequest(
            f"{labels[0]} has {lengths[0]} values; embeddings may have at most "
            f"{MAX_DIMENSION} dimensions"
        )
    wide = np.asarray(embeddings, dtype=np.float64)
    _reject_non_finite(wide, labels, "NaN or infinity")
    with np.errstate(over="ignore"):  # reported just below, as a sentence
        narrow = wide.astype(np.float32)
    _reject_non_finite(narrow, labels, "a value too large for 32-bit floats")
    squares = np.einsum("ij,ij->i", wide, wide)
    too_long = np.flatnonzero(squares >= MAX_SQUARED_LENGTH)
    if len(too_long):
        row = int(too_long[0])
        raise InvalidRequest(
            f"{labels[row]} is too long (its squared length is {squares[row]:.3g}); an "
            f"embedding's squared length must stay below {MAX_SQUARED_LENGTH:.0e} so that "
            "scores and distances between embeddings stay finite"
        )
    return narrow


def _reject_non_finite(matrix: npt.NDArray[np.floating], labels: Sequence[str], what: str) -> None:
    bad = ~np.isfinite(matrix)
    if bad.any():
        row, column = (int(i) for i in np.argwhere(bad)[0])
        raise InvalidRequest(f"{labels[row]} contains {what} at position {column}")


def check_dimension(found: int, expected: int | None, label: str, library_id: str) -> None:
    if expected is not None and found != expected:
        raise DimensionMismatch(
            f"{label} has {found} dimensions but library {library_id} holds "
            f"{expected}-dimensional vectors"
        )


def reject_zero_vectors(matrix: FloatMatrix, labels: Sequence[str]) -> None:
    """Cosine similarity is undefined for a vector of length zero."""
    zero = ~np.any(matrix != 0, axis=1)
    if zero.any():
        row = int(np.flatnonzero(zero)[0])
        raise InvalidRequest(
            f"{labels[row]} is all zeros; cosine similarity needs a non-zero vector"
        )
