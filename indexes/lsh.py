"""LSH: random-hyperplane hashing with multi-probe and exact re-ranking.

Each of ``tables`` hash tables keys a vector by the signs of its projections
on ``bits`` random hyperplanes (SimHash), so vectors at a small angle share a
bucket. Left out, ``bits`` follows the library's size (about log2(rows / 8),
re-hashing every row when the size has moved two bits away); the planes pass
through the mean of the rows at that re-hash. A query looks up its own bucket
and then, per table, the ``probes`` buckets whose keys differ in the bits
whose projections were closest to zero (query-directed multi-probe).
Candidates are scored exactly and the best k returned; when fewer than k
candidates match, the query is answered exactly.

Build O(n * tables * bits * d), query O(tables * (bits * d + probes * log n)
+ candidates * d), memory one uint32 key per row and table plus the sorted
tables. Angular by nature: for cosine it ranks well; for dot and l2 it only
proposes candidates by angle and the exact scores decide.

Hyperplanes come from a counter-based hash of the seed (not numpy's random
streams), so every replica and every numpy version draws the same ones.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Mapping
from typing import Any

import numpy as np

from indexes import lsh_kernels as kernels
from indexes.base import BoolArray, FloatArray, IdArray, query_matrix
from indexes.brute_force import BruteForceIndex
from indexes.metrics import Metric
from indexes.params import integer, only
from indexes.randomness import uniform
from indexes.vector_store import VectorStore

STATE_FORMAT = 1
MAX_BITS = 24
MAX_TABLES = 64
MAX_PROBES = 512
MAX_SEED = 2**63 - 1
MIN_AUTO_BITS = 4
BUCKET = 8


def hyperplanes(seed: int, count: int, dim: int) -> FloatArray:
    """Standard normal (count, dim) matrix from the seed by Box-Muller."""
    draws = uniform(seed, 0, 2 * count * dim)
    first, second = draws[0::2], draws[1::2]
    normal = np.sqrt(-2.0 * np.log(first)) * np.cos(2.0 * np.pi * second)
    return normal.reshape(count, dim).astype(np.float32)


class LshIndex:
    kind = "lsh"
    is_exact = False
    supports_incremental = True

    def __init__(
        self,
        store: VectorStore,
        metric: Metric = Metric.COSINE,
        *,
        tables: int = 12,
        bits: int | None = None,
        probes: int = 16,
        seed: int = 0,
    ) -> None:
        self.tables = integer("tables", tables, 1, MAX_TABLES)
        self.fixed_bits = None if bits is None else integer("bits", bits, 1, MAX_BITS)
        self.probes = integer("probes", probes, 0, MAX_PROBES)
        self.seed = integer("seed", seed, 0, MAX_SEED)
        self.store = store
        self.metric = metric
        self.planes = hyperplanes(self.seed, self.tables * MAX_BITS, store.dim).reshape(
            self.tables, MAX_BITS, store.dim
        )
        self.bits = self.fixed_bits if self.fixed_bits is not None else MIN_AUTO_BITS
        # Hyperplanes pass through this point: the mean of the rows at the
        # last re-hash. Real embeddings sit in a narrow cone; planes through
        # the origin would put nearly all of them on one side.
        self.center = np.zeros(store.dim, dtype=np.float32)
        self.keys = np.zeros((0, tables), dtype=np.uint32)
        self.hashed = np.zeros(0, dtype=np.bool_)
        self._sorted: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
        self._lock = threading.Lock()
        self._exact = BruteForceIndex(store, metric)

    # -------------------------------------------------------------- hashing
    @property
    def _weights(self) -> np.ndarray:
        return (np.uint32(1) << np.arange(self.bits, dtype=np.uint32)).astype(np.uint32)

    def _project(self, vectors: FloatArray) -> FloatArray:
        planes = self.planes[:, : self.bits].reshape(self.tables * self.bits, self.store.dim)
        centered = np.asarray(vectors - self.center, dtype=np.float32)
        projected: FloatArray = (centered @ planes.T).reshape(len(vectors), self.tables, self.bits)
        return projected

    def _keys(self, projected: FloatArray) -> np.ndarray:
        keys: np.ndarray = ((projected > 0).astype(np.uint32) * self._weights).sum(
            axis=2, dtype=np.uint32
        )
        return keys

    def _wanted_bits(self, rows: int) -> int:
        """Automatic width: about BUCKET rows per bucket."""
        if self.fixed_bits is not None:
            return self.fixed_bits
        return int(np.clip(np.round(np.log2(max(rows, 1) / BUCKET)), MIN_AUTO_BITS, MAX_BITS))

    def _rehash_if_outgrown(self) -> None:
        """Widen (or narrow) the keys when the row count moved two bits away.

        Decided from the row count alone, so replicas re-hash at the same step.
        """
        count = int(np.count_nonzero(self.hashed))
        wanted = self._wanted_bits(count)
        if abs(wanted - self.bits) < 2:
            return
        self.bits = wanted
        rows = np.flatnonzero(self.hashed)
        if len(rows):
            vectors = self.store.get(rows)
            self.center = vectors.mean(axis=0, dtype=np.float64).astype(np.float32)
            self.keys[rows] = self._keys(self._project(vectors))
        self._sorted = None

    def _grow(self) -> None:
        if len(self.hashed) < self.store.capacity:
            keys = np.zeros((self.store.capacity, self.tables), dtype=np.uint32)
            keys[: len(self.keys)] = self.keys
            hashed = np.zeros(self.store.capacity, dtype=np.bool_)
            hashed[: len(self.hashed)] = self.hashed
            self.keys, self.hashed = keys, hashed

    def add(self, ids: IdArray, vectors: FloatArray) -> None:
        ids = np.asarray(ids, dtype=np.int64)
        vectors = np.asarray(vectors, dtype=np.float32).reshape(len(ids), self.store.dim)
        self.store.put(ids, vectors)
        self._grow()
        self.keys[ids] = self._keys(self._project(vectors))
        self.hashed[ids] = True
        self._sorted = None
        self._rehash_if_outgrown()

    def remove(self, ids: IdArray) -> None:
        ids = np.asarray(ids, dtype=np.int64)
        ids = ids[(ids >= 0) & (ids < len(self.hashed))]
        self.hashed[ids] = False
        self.store.delete(ids)
        self._sorted = None
        self._rehash_if_outgrown()

    def _tables(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per table: keys sorted, with their rows; built lazily after changes."""
        with self._lock:
            if self._sorted is None:
                rows = np.flatnonzero(self.hashed).astype(np.int64)
                keys = self.keys[rows].T  # (tables, n)
                order = np.argsort(keys, axis=1, kind="stable")
                sorted_keys = np.take_along_axis(keys, order, axis=1)
                self._sorted = (np.ascontiguousarray(sorted_keys),
                                np.ascontiguousarray(rows[order]), rows)  # fmt: skip
            return self._sorted

    def _probe_keys(self, projected: FloatArray, probes: int) -> np.ndarray:
        """(queries, tables, 1 + probes) keys: the query's own, then the buckets
        reached by flipping the bits whose projections were nearest zero."""
        own = self._keys(projected)
        if probes == 0:
            return own[:, :, None]
        flips = _flip_sets(self.bits, probes)  # (candidate sets, bits) bool
        margin = np.abs(projected)  # (q, t, bits)
        costs = np.einsum("qtb,sb->qts", margin, flips.astype(np.float32))
        best = np.argsort(costs, axis=2, kind="stable")[:, :, :probes]
        masks = (flips.astype(np.uint32) * self._weights).sum(axis=1, dtype=np.uint32)
        probed = own[:, :, None] ^ masks[best]
        return np.concatenate([own[:, :, None], probed], axis=2)

    # --------------------------------------------------------------- search
    @staticmethod
    def check_search_params(params: Mapping[str, Any]) -> dict[str, Any]:
        """The search parameters as this index uses them; InvalidParameter if it cannot."""
        only("lsh search", params, ("probes",))
        if "probes" not in params:
            return {}
        return {"probes": integer("probes", params["probes"], 0, MAX_PROBES)}

    def search_batch(
        self, queries: FloatArray, k: int, mask: BoolArray | None = None, **params: Any
    ) -> tuple[IdArray, FloatArray]:
        probes = int(self.check_search_params(params).get("probes", self.probes))
        queries = query_matrix(queries, self.store.dim)
        sorted_keys, sorted_rows, _ = self._tables()
        live = self.store.live()
        usable = np.zeros(self.store.capacity, dtype=np.bool_)
        usable[: len(live)] = live
        if mask is not None:
            span = min(len(mask), len(usable))
            usable[:span] &= mask[:span]
            usable[span:] = False
        probe_keys = self._probe_keys(self._project(queries), probes)
        sq = np.einsum("ij,ij->i", queries, queries).astype(np.float32)
        ids = np.empty((len(queries), k), dtype=np.int64)
        values = np.empty((len(queries), k), dtype=np.float32)
        kernels.search_batch(
            self.store.buffer(), self.store.sqnorm_buffer(), kernels.MODES[self.metric.value],
            queries, sq, probe_keys, sorted_keys, sorted_rows, usable, ids, values,
        )  # fmt: skip
        if self.metric is Metric.L2:
            values = -np.sqrt(np.maximum(-values, 0.0)).astype(np.float32)
        values[ids < 0] = -np.inf
        expected = min(k, int(np.count_nonzero(usable)))
        short = np.flatnonzero((ids >= 0).sum(axis=1) < expected)
        if len(short):  # too few candidates: answer those queries exactly
            exact_ids, exact_values = self._exact.search_batch(queries[short], k, mask)
            width = exact_ids.shape[1]  # fewer than k when fewer rows exist
            ids[short], values[short] = -1, -np.inf
            ids[short, :width], values[short, :width] = exact_ids, exact_values
        return ids, values

    def search(
        self, query: FloatArray, k: int, mask: BoolArray | None = None, **params: Any
    ) -> tuple[IdArray, FloatArray]:
        ids, scores = self.search_batch(query_matrix(query, self.store.dim), k, mask, **params)
        found = ids[0] >= 0
        return ids[0][found], scores[0][found]

    # ---------------------------------------------------------- persistence
    def memory_bytes(self) -> int:
        total = self.keys.nbytes + self.hashed.nbytes + self.planes.nbytes
        if self._sorted is not None:
            total += sum(array.nbytes for array in self._sorted)
        return int(total)

    def state(self) -> dict[str, Any]:
        """Keys are a function of the vectors and the seed: only rows are kept."""
        rows = np.flatnonzero(self.hashed).astype("<i8")
        return {
            "format": STATE_FORMAT,
            "rows": rows.tobytes(),
            "bits": self.bits,
            "center": self.center.astype("<f4").tobytes(),
        }

    def restore(self, state: dict[str, Any]) -> None:
        if state.get("format") != STATE_FORMAT:
            raise ValueError(f"unknown lsh state format {state.get('format')}")
        rows = np.frombuffer(state["rows"], dtype="<i8").astype(np.int64)
        self.bits = int(state["bits"])
        self.center = np.frombuffer(state["center"], dtype="<f4").astype(np.float32)
        self.hashed = np.zeros(0, dtype=np.bool_)
        self.keys = np.zeros((0, self.tables), dtype=np.uint32)
        self._grow()
        if len(rows):
            self.keys[rows] = self._keys(self._project(self.store.get(rows)))
            self.hashed[rows] = True
        self._sorted = None


def _flip_sets(bits: int, wanted: int) -> np.ndarray:
    """Bit sets to flip, single bits then pairs then triples, as a bool matrix.

    Enough sets that the cheapest ``wanted`` per table are among them.
    """
    sets: list[tuple[int, ...]] = []
    for size in (1, 2, 3):
        sets += list(itertools.combinations(range(bits), size))
        if len(sets) >= 4 * wanted:
            break
    matrix = np.zeros((len(sets), bits), dtype=np.bool_)
    for row, chosen in enumerate(sets):
        matrix[row, list(chosen)] = True
    return matrix
