"""The one place a library's vectors live: a growable float32 matrix.

Rows are dense integer ids chosen by the owner. Indexes read rows from here
and never copy the vectors. Squared norms are kept beside the rows so cosine
and l2 scores need no second pass over the matrix.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

FloatMatrix = npt.NDArray[np.float32]
FloatVector = npt.NDArray[np.float32]
IdArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]


class VectorStore:
    def __init__(self, dim: int, capacity: int = 1024) -> None:
        if dim < 1:
            raise ValueError("dimension must be at least 1")
        self.dim = dim
        capacity = max(capacity, 16)
        self._data: FloatMatrix = np.zeros((capacity, dim), dtype=np.float32)
        self._sqnorms: FloatVector = np.zeros(capacity, dtype=np.float32)
        self._inverse_norms: FloatVector = np.zeros(capacity, dtype=np.float32)
        self._live: BoolArray = np.zeros(capacity, dtype=np.bool_)
        self._size = 0
        self._live_count = 0

    @property
    def size(self) -> int:
        """One past the highest row ever written (live or not)."""
        return self._size

    @property
    def live_count(self) -> int:
        return self._live_count

    @property
    def capacity(self) -> int:
        return int(self._data.shape[0])

    def reserve(self, rows_needed: int) -> None:
        """Make room for rows ``0..rows_needed-1`` without writing any."""
        self._reserve(rows_needed)

    def _reserve(self, rows_needed: int) -> None:
        if rows_needed <= self.capacity:
            return
        capacity = max(rows_needed, self.capacity * 2)
        data = np.zeros((capacity, self.dim), dtype=np.float32)
        data[: self._size] = self._data[: self._size]
        sqnorms = np.zeros(capacity, dtype=np.float32)
        sqnorms[: self._size] = self._sqnorms[: self._size]
        inverse = np.zeros(capacity, dtype=np.float32)
        inverse[: self._size] = self._inverse_norms[: self._size]
        self._inverse_norms = inverse
        live = np.zeros(capacity, dtype=np.bool_)
        live[: self._size] = self._live[: self._size]
        # Readers holding the old arrays keep a consistent (older) view.
        self._data, self._sqnorms, self._live = data, sqnorms, live

    def put(self, rows: IdArray, vectors: FloatMatrix) -> None:
        """Write ``vectors`` at ``rows`` (new rows or overwrites)."""
        rows = np.asarray(rows, dtype=np.int64)
        vectors = np.asarray(vectors, dtype=np.float32).reshape(len(rows), self.dim)
        if len(rows) == 0:
            return
        if rows.min() < 0:
            raise ValueError("row ids must be non-negative")
        top = int(rows.max()) + 1
        self._reserve(top)
        distinct = np.unique(rows)
        self._live_count += int(len(distinct) - np.count_nonzero(self._live[distinct]))
        self._data[rows] = vectors
        squares = np.einsum("ij,ij->i", vectors, vectors)
        self._sqnorms[rows] = squares
        self._inverse_norms[rows] = np.divide(
            1.0, np.sqrt(squares), out=np.zeros_like(squares), where=squares > 0
        )
        self._live[rows] = True
        self._size = max(self._size, top)

    def delete(self, rows: IdArray) -> None:
        rows = np.asarray(rows, dtype=np.int64)
        rows = np.unique(rows[(rows >= 0) & (rows < self._size)])
        self._live_count -= int(np.count_nonzero(self._live[rows]))
        self._live[rows] = False
        self._data[rows] = 0.0
        self._sqnorms[rows] = 0.0
        self._inverse_norms[rows] = 0.0

    def get(self, rows: IdArray) -> FloatMatrix:
        return self._data[np.asarray(rows, dtype=np.int64)].copy()

    def matrix(self) -> FloatMatrix:
        """Rows ``0..size`` as a view (dead rows are zero)."""
        return self._data[: self._size]

    def buffer(self) -> FloatMatrix:
        """The whole backing array (capacity rows); for kernels that index rows directly."""
        return self._data

    def sqnorm_buffer(self) -> FloatVector:
        """Squared norms for every row of :meth:`buffer`."""
        return self._sqnorms

    def inverse_norms(self) -> FloatVector:
        """1/|x| per row (0 for a zero or dead row), kept up to date on writes."""
        return self._inverse_norms[: self._size]

    def sqnorms(self) -> FloatVector:
        return self._sqnorms[: self._size]

    def live(self) -> BoolArray:
        return self._live[: self._size]

    def is_live(self, row: int) -> bool:
        return 0 <= row < self._size and bool(self._live[row])

    def nbytes(self) -> int:
        return int(
            self._data.nbytes + self._sqnorms.nbytes + self._inverse_norms.nbytes
            + self._live.nbytes
        )  # fmt: skip
