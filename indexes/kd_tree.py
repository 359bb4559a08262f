"""KD-tree: exact search by branch and bound over axis-aligned boxes.

Build O(n log^2 n) (a stable sort per level), query from O(log n) in low
dimensions up to O(n) in high ones, memory two d-float boxes per node (about
2n/leaf_size nodes) plus the row order. Worth it below roughly 20 dimensions;
above that almost every box overlaps the query's neighbourhood and the tree
visits nearly every leaf, so brute force is as fast (say so to users).

Boxes live in the space the metric compares in: unit vectors for cosine, raw
vectors for dot and l2, so a box's bound is a true upper bound for every
point in it. Only boxes are stored; leaves point at store rows.

Rows added after the last build wait in a pending list that every query
scans directly; deleted or overwritten rows are skipped. When the pending
list or the dead part of the tree grows past a quarter of the tree, the tree
is rebuilt over all live rows in row order, so replicas rebuild at the same
moments and reach the same trees.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from indexes import kd_kernels as kernels
from indexes.base import BoolArray, FloatArray, IdArray, query_matrix
from indexes.metrics import Metric, inverse_norms
from indexes.params import integer, only
from indexes.vector_store import VectorStore

STATE_FORMAT = 1
_MODES = {Metric.COSINE: kernels.COSINE, Metric.L2: kernels.L2, Metric.DOT: kernels.DOT}
REBUILD_SHARE = 0.25
MIN_PENDING = 256


class KdTreeIndex:
    kind = "kd_tree"
    is_exact = True
    supports_incremental = True

    def __init__(
        self, store: VectorStore, metric: Metric = Metric.COSINE, *, leaf_size: int = 32
    ) -> None:
        self.leaf_size = integer("leaf_size", leaf_size, 1, 4096)
        self.store = store
        self.metric = metric
        self._mode = _MODES[metric]
        self.in_tree = np.zeros(0, dtype=np.bool_)
        self.pending: list[int] = []
        self.built_size = 0
        self.dead = 0
        self._clear_tree()

    def _clear_tree(self) -> None:
        dim = self.store.dim
        self.lo = np.empty((0, dim), dtype=np.float32)
        self.hi = np.empty((0, dim), dtype=np.float32)
        self.left = np.empty(0, dtype=np.int64)
        self.right = np.empty(0, dtype=np.int64)
        self.start = np.empty(0, dtype=np.int64)
        self.end = np.empty(0, dtype=np.int64)
        self.order = np.empty(0, dtype=np.int64)

    # ---------------------------------------------------------------- build
    def _space(self, rows: IdArray) -> FloatArray:
        vectors = self.store.get(rows)
        if self.metric is Metric.COSINE:
            vectors *= inverse_norms(np.einsum("ij,ij->i", vectors, vectors))[:, None]
        return vectors

    def _build(self, rows: IdArray) -> None:
        """A tree over ``rows``: split each box at the median of its widest side."""
        self._clear_tree()
        self.in_tree = np.zeros(max(self.store.capacity, 1), dtype=np.bool_)
        self.in_tree[rows] = True
        self.pending, self.built_size, self.dead = [], len(rows), 0
        if len(rows) == 0:
            return
        points = self._space(rows)
        order = np.arange(len(rows))
        lo: list[FloatArray] = []
        hi: list[FloatArray] = []
        left: list[int] = []
        right: list[int] = []
        start: list[int] = []
        end: list[int] = []

        def new_node(first: int, last: int) -> int:
            for column, value in ((start, first), (end, last), (left, -1), (right, -1)):
                column.append(value)
            box = points[order[first:last]]
            lo.append(box.min(axis=0))
            hi.append(box.max(axis=0))
            return len(start) - 1

        stack = [new_node(0, len(rows))]
        while stack:
            node = stack.pop()
            first, last = start[node], end[node]
            if last - first <= self.leaf_size:
                continue
            axis = int(np.argmax(hi[node] - lo[node]))
            span = order[first:last]
            order[first:last] = span[np.argsort(points[span, axis], kind="stable")]
            middle = (first + last) // 2
            left[node] = new_node(first, middle)
            right[node] = new_node(middle, last)
            stack += [right[node], left[node]]
        self.lo, self.hi = np.asarray(lo, dtype=np.float32), np.asarray(hi, dtype=np.float32)
        self.left, self.right = np.asarray(left, dtype=np.int64), np.asarray(right, dtype=np.int64)
        self.start, self.end = np.asarray(start, dtype=np.int64), np.asarray(end, dtype=np.int64)
        self.order = rows[order]

    def _rebuild(self) -> None:
        self._build(np.flatnonzero(self.store.live()).astype(np.int64))

    def _maybe_rebuild(self) -> None:
        limit = max(MIN_PENDING, REBUILD_SHARE * self.built_size)
        if len(self.pending) > limit or self.dead > REBUILD_SHARE * max(1, self.built_size):
            self._rebuild()

    # ------------------------------------------------------------- mutations
    def _grow(self) -> None:
        if len(self.in_tree) < self.store.capacity:
            grown = np.zeros(self.store.capacity, dtype=np.bool_)
            grown[: len(self.in_tree)] = self.in_tree
            self.in_tree = grown

    def add(self, ids: IdArray, vectors: FloatArray) -> None:
        ids = np.asarray(ids, dtype=np.int64)
        self.store.put(ids, vectors)
        self._grow()
        replaced = ids[self.in_tree[ids]]
        self.in_tree[replaced] = False  # its box no longer holds the new vector
        self.dead += len(replaced)
        fresh = set(self.pending)
        self.pending.extend(int(row) for row in ids.tolist() if row not in fresh)
        self._maybe_rebuild()

    def remove(self, ids: IdArray) -> None:
        ids = np.asarray(ids, dtype=np.int64)
        ids = ids[(ids >= 0) & (ids < self.store.size)]
        self._grow()
        leaving = np.unique(ids[self.in_tree[ids]])
        self.in_tree[leaving] = False
        self.dead += len(leaving)
        gone = set(ids.tolist())
        self.pending = [row for row in self.pending if row not in gone]
        self.store.delete(ids)
        self._maybe_rebuild()

    # --------------------------------------------------------------- search
    @staticmethod
    def check_search_params(params: Mapping[str, Any]) -> dict[str, Any]:
        """The search parameters as this index uses them; InvalidParameter if it cannot."""
        only("kd_tree search", params, ())
        return {}

    def search_batch(
        self, queries: FloatArray, k: int, mask: BoolArray | None = None, **params: Any
    ) -> tuple[IdArray, FloatArray]:
        self.check_search_params(params)
        queries = query_matrix(queries, self.store.dim)
        self._grow()
        size = self.store.capacity
        usable = np.zeros(size, dtype=np.bool_)
        live = self.store.live()
        usable[: len(live)] = live
        if mask is not None:
            span = min(len(mask), size)
            usable[:span] &= mask[:span]
            usable[span:] = False
        tree_ok = usable.copy()
        # Leaves may only return rows still holding the vector the tree was built with.
        tree_ok &= self.in_tree[:size]
        pending = np.asarray(self.pending, dtype=np.int64)
        for_pending = np.zeros(size, dtype=np.bool_)
        for_pending[pending] = usable[pending]
        combined = tree_ok | for_pending
        sq = np.einsum("ij,ij->i", queries, queries).astype(np.float32)
        unit = queries * inverse_norms(sq)[:, None]
        if self.metric is Metric.COSINE:
            aux, query_aux = inverse_norms(self.store.sqnorm_buffer()), inverse_norms(sq)
        elif self.metric is Metric.L2:
            aux, query_aux = self.store.sqnorm_buffer(), sq
        else:
            aux, query_aux = self.store.sqnorm_buffer(), np.zeros_like(sq)
        ids = np.empty((len(queries), k), dtype=np.int64)
        values = np.empty((len(queries), k), dtype=np.float32)
        kernels.search_batch(
            self.store.buffer(), aux, self._mode, queries, query_aux, unit, self.lo, self.hi,
            self.left, self.right, self.start, self.end, self.order, pending, combined, ids,
            values,
        )  # fmt: skip
        if self.metric is Metric.L2:
            values = -np.sqrt(np.maximum(-values, 0.0)).astype(np.float32)
        values[ids < 0] = -np.inf
        return ids, values

    def search(
        self, query: FloatArray, k: int, mask: BoolArray | None = None, **params: Any
    ) -> tuple[IdArray, FloatArray]:
        ids, scores = self.search_batch(query_matrix(query, self.store.dim), k, mask, **params)
        found = ids[0] >= 0
        return ids[0][found], scores[0][found]

    # ---------------------------------------------------------- persistence
    def memory_bytes(self) -> int:
        arrays = (self.lo, self.hi, self.left, self.right, self.start, self.end, self.order,
                  self.in_tree)  # fmt: skip
        return int(sum(array.nbytes for array in arrays)) + 8 * len(self.pending)

    def state(self) -> dict[str, Any]:
        tree_rows = np.flatnonzero(self.in_tree).astype("<i8")
        return {
            "format": STATE_FORMAT,
            "leaf_size": self.leaf_size,
            "tree_rows": tree_rows.tobytes(),
            "pending": np.asarray(self.pending, dtype="<i8").tobytes(),
            "built_size": self.built_size,
            "dead": self.dead,
        }

    def restore(self, state: dict[str, Any]) -> None:
        """Rebuild the tree over the rows it held; the rebuild counters carry over
        so later rebuilds happen when they would have on the original."""
        if state.get("format") != STATE_FORMAT:
            raise ValueError(f"unknown kd_tree state format {state.get('format')}")
        self._build(np.frombuffer(state["tree_rows"], dtype="<i8").astype(np.int64))
        self.pending = np.frombuffer(state["pending"], dtype="<i8").astype(np.int64).tolist()
        self.built_size, self.dead = int(state["built_size"]), int(state["dead"])
