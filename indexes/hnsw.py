"""HNSW: a layered proximity graph (Malkov and Yashunin) over a VectorStore.

Build O(n log n * M * ef_construction * d), query about O(log n * ef * M * d),
memory (2M + 1) int32 per node on level 0 plus M per upper level (about 1/M
of nodes reach level 1). Approximate; ``ef`` trades speed for recall.

Determinism: a node's level comes from a counter-based hash of the seed and
its insertion number, and nodes are inserted and repaired in a fixed order,
so replicas that apply the same log build the same graph. Deletes are
tombstones (traversed, never returned); once they exceed a share of the
graph, or a deleted row is reused, a repair pass reconnects the nodes that
pointed at them and drops them from the graph.
"""

from __future__ import annotations

import threading
import zlib
from collections.abc import Mapping
from typing import Any

import numpy as np

from indexes import hnsw_kernels as kernels
from indexes.base import BoolArray, FloatArray, IdArray, query_matrix
from indexes.brute_force import BruteForceIndex
from indexes.metrics import Metric, inverse_norms
from indexes.params import integer, number, only
from indexes.randomness import uniform
from indexes.vector_store import VectorStore

STATE_FORMAT = 1
MAX_EF = 10_000
MAX_SEED = 2**63 - 1
_MODES = {Metric.COSINE: kernels.COSINE, Metric.L2: kernels.L2, Metric.DOT: kernels.DOT}
_ARRAYS = ("levels", "deleted", "links0", "count0", "upper_offset", "upper_links", "upper_count")


class HnswIndex:
    kind = "hnsw"
    is_exact = False
    supports_incremental = True

    def __init__(
        self,
        store: VectorStore,
        metric: Metric = Metric.COSINE,
        *,
        M: int = 16,  # noqa: N803 - the parameter's name in the literature
        ef_construction: int = 200,
        ef_search: int = 64,
        seed: int = 0,
        repair_threshold: float = 0.1,
        exact_below: float = 0.05,
    ) -> None:
        # Checked and stored as plain int and float: the kernels are compiled
        # for the types they are called with (a float here once failed there).
        self.m = integer("M", M, 2, 256)
        self.m0 = 2 * self.m
        self.ef_construction = integer("ef_construction", ef_construction, 1, MAX_EF)
        self.ef_search = integer("ef_search", ef_search, 1, MAX_EF)
        self.seed = integer("seed", seed, 0, MAX_SEED)
        self.repair_threshold = number("repair_threshold", repair_threshold, 0, 1, above_low=True)
        self.exact_below = number("exact_below", exact_below, 0, 1)
        self.store = store
        self.metric = metric
        self._mode = _MODES[metric]
        self._level_scale = 1.0 / np.log(self.m)
        self.entry, self.max_level = -1, -1
        self.inserted = 0
        self.upper_used = 0
        self.tombstones = 0
        self.nodes = 0
        self._capacity = 0
        self.levels = np.empty(0, dtype=np.int8)
        self.deleted = np.empty(0, dtype=np.bool_)
        self.links0 = np.empty((0, self.m0), dtype=np.int32)
        self.count0 = np.empty(0, dtype=np.int32)
        self.upper_offset = np.empty(0, dtype=np.int32)
        self.aux = np.empty(0, dtype=np.float32)
        self.upper_links = np.empty((0, self.m), dtype=np.int32)
        self.upper_count = np.empty(0, dtype=np.int32)
        self._local = threading.local()
        self._exact = BruteForceIndex(store, metric)

    # ------------------------------------------------------------- arrays
    def _reserve(self, rows: int) -> None:
        if rows <= self._capacity:
            return
        capacity = max(rows, 2 * self._capacity, 16)

        def grow(array: np.ndarray, fill: Any) -> np.ndarray:
            grown = np.full((capacity, *array.shape[1:]), fill, dtype=array.dtype)
            grown[: len(array)] = array
            return grown

        self.levels = grow(self.levels, -1)
        self.deleted = grow(self.deleted, False)
        self.links0 = grow(self.links0, 0)
        self.count0 = grow(self.count0, 0)
        self.upper_offset = grow(self.upper_offset, 0)
        self.aux = grow(self.aux, 0.0)
        self._capacity = capacity

    def _reserve_upper(self, rows: int) -> None:
        if rows <= len(self.upper_count):
            return
        capacity = max(rows, 2 * len(self.upper_count), 16)
        links = np.zeros((capacity, self.m), dtype=np.int32)
        links[: len(self.upper_links)] = self.upper_links
        counts = np.zeros(capacity, dtype=np.int32)
        counts[: len(self.upper_count)] = self.upper_count
        self.upper_links, self.upper_count = links, counts

    def _visited(self) -> tuple[np.ndarray, int]:
        visited = getattr(self._local, "visited", None)
        if visited is None or len(visited) < self.store.capacity:
            visited = np.zeros(max(self.store.capacity, 16), dtype=np.uint32)
            self._local.visited, self._local.tag = visited, 0
            # A query's candidate heap: one entry per node it may visit.
            self._local.cand_keys = np.empty(len(visited), dtype=np.float32)
            self._local.cand_values = np.empty(len(visited), dtype=np.int64)
        return visited, int(self._local.tag)

    def _aux_for(self, vectors: FloatArray) -> FloatArray:
        sq: FloatArray = np.einsum("ij,ij->i", vectors, vectors).astype(np.float32)
        return self._aux_from_squares(sq)

    def _aux_from_squares(self, sq: FloatArray) -> FloatArray:
        if self.metric is Metric.COSINE:
            return inverse_norms(sq)
        if self.metric is Metric.L2:
            return sq
        zeros: FloatArray = np.zeros_like(sq)
        return zeros

    def _draw_levels(self, count: int) -> np.ndarray:
        draws = uniform(self.seed, self.inserted, count)
        self.inserted += count
        levels: IdArray = np.minimum(np.floor(-np.log(draws) * self._level_scale), 60).astype(
            np.int64
        )
        return levels

    # ----------------------------------------------------------- mutations
    def add(self, ids: IdArray, vectors: FloatArray) -> None:
        ids = np.asarray(ids, dtype=np.int64)
        vectors = np.asarray(vectors, dtype=np.float32).reshape(len(ids), self.store.dim)
        if len(ids) == 0:
            return
        if len(np.unique(ids)) != len(ids) or ids.min() < 0:
            raise ValueError("ids must be distinct and non-negative within one add")
        self._reserve(int(ids.max()) + 1)
        present = ids[ids < len(self.levels)]
        in_graph = present[self.levels[present] >= 0]
        if len(in_graph):  # overwriting rows: retire the old nodes first
            self._tombstone(in_graph)
        if self.tombstones and self.deleted[ids].any():
            self.repair()
        self.store.put(ids, vectors)
        self._reserve(self.store.capacity)
        self.aux[ids] = self._aux_from_squares(self.store.sqnorm_buffer()[ids])
        levels = self._draw_levels(len(ids))
        high = levels > 0
        offsets = np.zeros(len(ids), dtype=np.int64)
        offsets[high] = self.upper_used + np.concatenate(([0], np.cumsum(levels[high])[:-1]))
        self.upper_offset[ids[high]] = offsets[high]
        self.upper_used += int(levels[high].sum())
        self._reserve_upper(self.upper_used)
        visited, tag = self._visited()
        local = self._local
        self.entry, self.max_level, tag = kernels.insert_batch(
            self.store.buffer(), self.aux, self._mode, ids, levels, self.m,
            self.ef_construction, self.links0, self.count0, self.levels, self.upper_offset,
            self.upper_links, self.upper_count, self.deleted, visited, local.cand_keys,
            local.cand_values, tag, self.entry, self.max_level,
        )  # fmt: skip
        self._local.tag = tag
        self.nodes += len(ids)

    def _tombstone(self, ids: IdArray) -> None:
        fresh = ids[(self.levels[ids] >= 0) & ~self.deleted[ids]]
        self.deleted[fresh] = True
        self.aux[fresh] = 0.0
        self.tombstones += len(fresh)

    def remove(self, ids: IdArray) -> None:
        ids = np.asarray(ids, dtype=np.int64)
        ids = np.unique(ids[(ids >= 0) & (ids < len(self.levels))])
        self._tombstone(ids)
        self.store.delete(ids)
        if self.tombstones > self.repair_threshold * max(1, self.nodes):
            self.repair()

    def repair(self) -> None:
        """Reconnect around every tombstone and drop them from the graph."""
        if not self.tombstones:
            return
        visited, tag = self._visited()
        self._local.tag = kernels.repair(
            self.store.buffer(),
            self.aux,
            self._mode,
            self.m,
            self.links0,
            self.count0,
            self.levels,
            self.upper_offset,
            self.upper_links,
            self.upper_count,
            self.deleted,
            visited,
            tag,
            len(self.levels),
        )
        self.nodes -= self.tombstones
        self.tombstones = 0
        if self.entry >= 0 and self.levels[self.entry] >= 0:
            return
        live = np.flatnonzero(self.levels >= 0)
        if len(live) == 0:
            self.entry, self.max_level = -1, -1
            return
        top = int(self.levels[live].max())
        # The lowest id among the highest nodes: every replica picks the same.
        self.entry, self.max_level = int(live[np.argmax(self.levels[live] == top)]), top

    # --------------------------------------------------------------- search
    @staticmethod
    def check_search_params(params: Mapping[str, Any]) -> dict[str, Any]:
        """The search parameters as this index uses them; InvalidParameter if it cannot."""
        only("hnsw search", params, ("ef",))
        return {"ef": integer("ef", params["ef"], 1, MAX_EF)} if "ef" in params else {}

    def _to_scores(self, distances: FloatArray) -> FloatArray:
        scores: FloatArray
        if self.metric is Metric.COSINE:
            scores = (np.float32(1.0) - distances).astype(np.float32)
        elif self.metric is Metric.L2:
            scores = (-np.sqrt(np.maximum(distances, 0.0))).astype(np.float32)
        else:
            scores = (-distances).astype(np.float32)
        return scores

    def search_batch(
        self, queries: FloatArray, k: int, mask: BoolArray | None = None, **params: Any
    ) -> tuple[IdArray, FloatArray]:
        ef = int(self.check_search_params(params).get("ef", self.ef_search))
        queries = query_matrix(queries, self.store.dim)
        allowed_count = None
        full_mask = np.empty(0, dtype=np.bool_)
        if mask is not None:
            full_mask = np.zeros(len(self.levels), dtype=np.bool_)
            span = min(len(mask), len(full_mask))
            full_mask[:span] = mask[:span]
            allowed_count = int(np.count_nonzero(full_mask & (self.levels >= 0) & ~self.deleted))
            if allowed_count <= max(k, self.exact_below * max(1, self.nodes - self.tombstones)):
                return self._exact.search_batch(queries, k, mask)
        ids = np.empty((len(queries), k), dtype=np.int64)
        distances = np.empty((len(queries), k), dtype=np.float32)
        query_aux = self._aux_for(queries)
        visited, tag = self._visited()
        local = self._local
        local.tag = kernels.search_batch(
            self.store.buffer(), self.aux, self._mode, queries, query_aux, k, ef,
            self.links0, self.count0, self.upper_offset, self.upper_links, self.upper_count,
            self.deleted, full_mask, mask is not None, visited, local.cand_keys,
            local.cand_values, tag, self.entry, self.max_level, ids, distances,
        )  # fmt: skip
        scores = self._to_scores(distances)
        scores[ids < 0] = -np.inf
        expected = min(k, self.nodes - self.tombstones if allowed_count is None else allowed_count)
        short = np.flatnonzero((ids >= 0).sum(axis=1) < expected)
        if len(short):  # the graph walk found too few matches: answer those exactly
            exact_ids, exact_scores = self._exact.search_batch(queries[short], k, mask)
            ids[short], scores[short] = exact_ids, exact_scores
        return ids, scores

    def search(
        self, query: FloatArray, k: int, mask: BoolArray | None = None, **params: Any
    ) -> tuple[IdArray, FloatArray]:
        if mask is not None:
            ids, scores = self.search_batch(query_matrix(query, self.store.dim), k, mask, **params)
            found = ids[0] >= 0
            return ids[0][found], scores[0][found]
        # One unfiltered query, what a REST query asks: a single kernel call
        # does the walk, the scores and the trimming (see bench/hnsw_per_call.py).
        ef: Any = self.ef_search
        if params:  # {"ef": a fitting int} passes at once: the full check costs 1.5 us
            ef = params.get("ef") if len(params) == 1 else None
            if type(ef) is not int or not 1 <= ef <= MAX_EF:
                ef = int(self.check_search_params(params).get("ef", self.ef_search))
        vector = query
        if not (  # what a REST query passes; anything else is checked and converted
            type(query) is np.ndarray
            and query.dtype == np.float32
            and query.shape == (self.store.dim,)
            and query.flags.c_contiguous
        ):
            vector = query_matrix(query, self.store.dim)[0]
        visited, tag = self._visited()
        local = self._local
        ids, scores, local.tag = kernels.search_one(
            self.store.buffer(), self.aux, self._mode, vector, k, ef,
            self.links0, self.count0, self.upper_offset, self.upper_links, self.upper_count,
            self.deleted, visited, local.cand_keys, local.cand_values, tag, self.entry,
            self.max_level,
        )  # fmt: skip
        if len(ids) < min(k, self.nodes - self.tombstones):  # the walk found too few
            return self._exact.search(vector, k)
        return ids, scores

    def check_integrity(self) -> list[str]:
        """Graph invariants that must always hold; returns what is broken."""
        problems = []
        in_graph = self.levels >= 0
        for node in np.flatnonzero(in_graph).tolist():
            for level in range(int(self.levels[node]) + 1):
                if level == 0:
                    links = self.links0[node, : self.count0[node]]
                    limit = self.m0
                else:
                    row = self.upper_offset[node] + level - 1
                    links = self.upper_links[row, : self.upper_count[row]]
                    limit = self.m
                if len(links) > limit:
                    problems.append(f"node {node} level {level} has {len(links)} > {limit} links")
                if node in links:
                    problems.append(f"node {node} links to itself on level {level}")
                if len(set(links.tolist())) != len(links):
                    problems.append(f"node {node} level {level} has duplicate links")
                bad = [int(n) for n in links if n >= len(self.levels) or self.levels[n] < level]
                if bad:
                    problems.append(f"node {node} level {level} links to {bad[:3]} not on it")
        if self.entry >= 0 and (self.levels[self.entry] != self.max_level):
            problems.append(f"entry {self.entry} is not on the top level {self.max_level}")
        if int(in_graph.sum()) != self.nodes or int(self.deleted.sum()) != self.tombstones:
            problems.append("node or tombstone counts disagree with the arrays")
        return problems

    # ---------------------------------------------------------- persistence
    def memory_bytes(self) -> int:
        arrays = [getattr(self, name) for name in _ARRAYS] + [self.aux]
        return int(sum(array.nbytes for array in arrays))

    def state(self) -> dict[str, Any]:
        in_graph = np.flatnonzero(self.levels >= 0)
        size = int(in_graph[-1]) + 1 if len(in_graph) else 0
        arrays = {name: getattr(self, name)[:size] for name in _ARRAYS}
        arrays["upper_links"] = self.upper_links[: self.upper_used]
        arrays["upper_count"] = self.upper_count[: self.upper_used]
        blobs = {name: np.ascontiguousarray(array).tobytes() for name, array in arrays.items()}
        checksum = 0
        for name in sorted(blobs):
            checksum = zlib.crc32(blobs[name], checksum)
        return {
            "format": STATE_FORMAT,
            "params": {"M": self.m, "ef_construction": self.ef_construction,
                       "ef_search": self.ef_search, "seed": self.seed},
            "size": size,
            "entry": self.entry,
            "max_level": self.max_level,
            "inserted": self.inserted,
            "upper_used": self.upper_used,
            "tombstones": self.tombstones,
            "nodes": self.nodes,
            "arrays": blobs,
            "crc32": checksum,
        }  # fmt: skip

    def restore(self, state: dict[str, Any]) -> None:
        """Load a graph saved by :meth:`state` over a store holding its vectors."""
        if state.get("format") != STATE_FORMAT:
            raise ValueError(f"unknown hnsw state format {state.get('format')}")
        blobs = state["arrays"]
        checksum = 0
        for name in sorted(blobs):
            checksum = zlib.crc32(blobs[name], checksum)
        if checksum != state["crc32"]:
            raise ValueError("hnsw state checksum mismatch")
        size, used = state["size"], state["upper_used"]
        self.store.reserve(size)  # tombstoned rows are traversed, so they need room
        shapes = {"links0": (size, self.m0), "upper_links": (used, self.m)}
        dtypes = {"levels": np.int8, "deleted": np.bool_, "links0": np.int32,
                  "count0": np.int32, "upper_offset": np.int32, "upper_links": np.int32,
                  "upper_count": np.int32}  # fmt: skip
        self._capacity = 0
        for name in _ARRAYS:
            array: np.ndarray = np.frombuffer(blobs[name], dtype=dtypes[name])
            setattr(self, name, array.reshape(shapes.get(name, (-1,))).copy())
        self._capacity = size
        self.aux = np.zeros(size, dtype=np.float32)
        self._reserve(self.store.capacity)
        in_graph = np.flatnonzero((self.levels >= 0) & ~self.deleted)
        # The store computed these squares from the same rows as add() did,
        # so the restored aux is bit for bit the saved index's, without
        # copying every vector out of the store.
        self.aux[in_graph] = self._aux_from_squares(self.store.sqnorm_buffer()[in_graph])
        for key in ("entry", "max_level", "inserted", "upper_used", "tombstones", "nodes"):
            setattr(self, key, int(state[key]))
