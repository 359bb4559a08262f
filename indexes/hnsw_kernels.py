"""Numba kernels of the HNSW graph. Pure array functions; they never raise.

The graph lives in flat arrays owned by :class:`indexes.hnsw.HnswIndex`:

- ``links0[node, :count0[node]]``: neighbours on level 0 (up to 2M);
- ``upper_links[upper_offset[node] + level - 1, :upper_count[...]]``:
  neighbours on levels >= 1 (up to M);
- ``levels[node]``: top level, -1 when the node is not in the graph;
- ``deleted[node]``: a tombstone; still traversed, never returned.

Distances are "smaller is better": cosine ``1 - cos``, l2 squared distance,
dot ``-x.q``. ``aux`` holds per-row inverse norms (cosine) or squared norms
(l2). ``visited`` is a tag array: a node is visited when its tag equals the
current one, so clearing it is one increment.

Determinism: every replica builds its own graph from the same log, so all
that decides the graph (inserting, choosing and repairing neighbours) must
compute bit-identical distances on any CPU. Those kernels are compiled
without ``fastmath`` (which lets LLVM reassociate sums, and so sum
differently for 4-, 8- or 16-wide vectors, and fuse multiply-adds where the
CPU has FMA) and take dot products with :func:`fixed_dot`, whose summation
order is written out. Only :func:`search_batch`, which ranks results for a
query and changes nothing, keeps ``fastmath``. Functions marked
``inline="always"`` are inlined into their caller before code generation
and take the caller's flags.
"""

from __future__ import annotations

from typing import Any

import numba
import numpy as np
from llvmlite import ir
from numba.core import cgutils, types
from numba.extending import intrinsic

from indexes.prefetch import prefetch_links, prefetch_row

COSINE = 0
L2 = 1
DOT = 2


# --------------------------------------------------------- fixed-order dot
# Lanes of the explicit vector in fixed_dot. Any CPU runs a <16 x float>
# operation lane by lane (one AVX-512 register, two AVX ones, four SSE ones),
# so its results do not depend on the CPU; 16 gives an AVX2 CPU two
# independent chains of additions to overlap.
DOT_LANES = 16


def _fixed_dot(typingctx: Any, matrix: Any, row: Any, vector: Any) -> Any:  # noqa: ARG001
    """``matrix[row, :n] . vector[:n]`` (n = len(vector)) in float32, summed in
    an order written out here: lane ``k`` of DOT_LANES running sums adds the
    products at ``k, k + DOT_LANES, ...`` of the full blocks; the lanes are
    then added pairwise ((0+1)+(2+3))+..., and the remaining products one by
    one. Every operation is a plain IEEE one (no fast-math flags, so no fused
    multiply-add and no reassociation) as long as the caller is not compiled
    with fastmath, so every CPU computes the same bits.
    """
    if not (
        isinstance(matrix, types.Array)
        and isinstance(vector, types.Array)
        and matrix.ndim == 2
        and vector.ndim == 1
        and matrix.layout == "C"
        and vector.layout == "C"
        and matrix.dtype == types.float32
        and vector.dtype == types.float32
        and isinstance(row, types.Integer)
    ):
        return None
    return types.float32(matrix, row, vector), _fixed_dot_codegen


def _fixed_dot_codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
    matrix_type, row_type, vector_type = sig.args
    matrix = context.make_array(matrix_type)(context, builder, args[0])
    vector = context.make_array(vector_type)(context, builder, args[2])
    intp = context.get_value_type(types.intp)
    zero = ir.Constant(intp, 0)
    row_index = context.cast(builder, args[1], row_type, types.intp)
    left = cgutils.get_item_pointer(  # type: ignore[no-untyped-call]
        context, builder, matrix_type, matrix, [row_index, zero], wraparound=False
    )
    right = vector.data
    size = builder.extract_value(vector.shape, 0)
    lanes = ir.Constant(intp, DOT_LANES)
    full = builder.sub(size, builder.srem(size, lanes))
    f32 = ir.FloatType()
    wide = ir.VectorType(f32, DOT_LANES)

    zeros = ir.Constant(wide, [0.0] * DOT_LANES)
    sums = cgutils.alloca_once_value(builder, zeros)  # type: ignore[no-untyped-call]
    with cgutils.for_range_slice(builder, zero, full, lanes, intp=intp) as (j, _):
        a = builder.load(builder.bitcast(builder.gep(left, [j]), wide.as_pointer()), align=4)
        b = builder.load(builder.bitcast(builder.gep(right, [j]), wide.as_pointer()), align=4)
        builder.store(builder.fadd(builder.load(sums), builder.fmul(a, b)), sums)
    acc = builder.load(sums)
    level = [builder.extract_element(acc, ir.Constant(ir.IntType(32), k)) for k in range(DOT_LANES)]
    while len(level) > 1:
        level = [builder.fadd(level[k], level[k + 1]) for k in range(0, len(level), 2)]

    total = cgutils.alloca_once_value(builder, level[0])  # type: ignore[no-untyped-call]
    with cgutils.for_range_slice(builder, full, size, ir.Constant(intp, 1), intp=intp) as (j, _):
        product = builder.fmul(
            builder.load(builder.gep(left, [j])), builder.load(builder.gep(right, [j]))
        )
        builder.store(builder.fadd(builder.load(total), product), total)
    return builder.load(total)


fixed_dot: Any = intrinsic(_fixed_dot)


# ---------------------------------------------------------------- distances
@numba.njit(inline="always", cache=True, nogil=True)
def _dot(data: np.ndarray, row: int, query: np.ndarray) -> Any:
    """For search: under a fastmath caller LLVM picks the summation order."""
    total = np.float32(0.0)
    for j in range(query.shape[0]):
        total += data[row, j] * query[j]
    return total


@numba.njit(inline="always", cache=True, nogil=True)
def _finish(mode: int, product: Any, row_aux: Any, query_aux: Any) -> Any:
    if mode == COSINE:
        return 1.0 - product * row_aux * query_aux
    if mode == L2:
        return row_aux + query_aux - 2.0 * product
    return -product


@numba.njit(inline="always", cache=True, nogil=True)
def distance(
    data: np.ndarray, aux: np.ndarray, mode: int, row: int, query: np.ndarray, query_aux: float
) -> Any:
    """Search-path distance from ``query`` to ``row``."""
    return _finish(mode, _dot(data, row, query), aux[row], query_aux)


@numba.njit(inline="always", cache=True, nogil=True)
def fixed_distance(
    data: np.ndarray, aux: np.ndarray, mode: int, row: int, query: np.ndarray, query_aux: float
) -> Any:
    """Build-path distance: the same bits on every CPU when the caller is not fastmath."""
    return _finish(mode, fixed_dot(data, row, query), aux[row], query_aux)


@numba.njit(inline="always", cache=True, nogil=True)
def row_distance(data: np.ndarray, aux: np.ndarray, mode: int, a: int, b: int) -> Any:
    """Build-path distance between two stored rows."""
    return fixed_distance(data, aux, mode, a, data[b], aux[b])


# -------------------------------------------------------------------- heaps
# Binary min-heaps over (key, value) pairs kept in two arrays. A max-heap is
# a min-heap on negated keys.
@numba.njit(inline="always", cache=True, nogil=True)
def heap_push(keys: np.ndarray, values: np.ndarray, size: int, key: float, value: int) -> int:
    slot = size
    while slot > 0:
        parent = (slot - 1) >> 1
        if keys[parent] <= key:
            break
        keys[slot] = keys[parent]
        values[slot] = values[parent]
        slot = parent
    keys[slot] = key
    values[slot] = value
    return size + 1


@numba.njit(inline="always", cache=True, nogil=True)
def heap_pop(keys: np.ndarray, values: np.ndarray, size: int) -> int:
    """Remove the smallest; the caller reads keys[0]/values[0] first."""
    size -= 1
    key = keys[size]
    value = values[size]
    slot = 0
    while True:
        child = 2 * slot + 1
        if child >= size:
            break
        if child + 1 < size and keys[child + 1] < keys[child]:
            child += 1
        if keys[child] >= key:
            break
        keys[slot] = keys[child]
        values[slot] = values[child]
        slot = child
    if size > 0:
        keys[slot] = key
        values[slot] = value
    return size


# -------------------------------------------------------------- graph access
@numba.njit(inline="always", cache=True, nogil=True)
def neighbours(
    node: int,
    level: int,
    links0: np.ndarray,
    count0: np.ndarray,
    upper_offset: np.ndarray,
    upper_links: np.ndarray,
    upper_count: np.ndarray,
) -> np.ndarray:
    if level == 0:
        return links0[node, : count0[node]]
    row = upper_offset[node] + level - 1
    return upper_links[row, : upper_count[row]]


@numba.njit(inline="always", cache=True, nogil=True)
def _set_neighbours(
    node: int,
    level: int,
    chosen: np.ndarray,
    count: int,
    links0: np.ndarray,
    count0: np.ndarray,
    upper_offset: np.ndarray,
    upper_links: np.ndarray,
    upper_count: np.ndarray,
) -> None:
    if level == 0:
        links0[node, :count] = chosen[:count]
        count0[node] = count
    else:
        row = upper_offset[node] + level - 1
        upper_links[row, :count] = chosen[:count]
        upper_count[row] = count


@numba.njit(cache=True, nogil=True)
def next_tag(visited: np.ndarray, tag: int) -> int:
    tag += 1
    if tag >= 0xFFFFFFFF:
        visited[:] = 0
        tag = 1
    return tag


# -------------------------------------------------------------- layer search
@numba.njit(inline="always", cache=True, nogil=True)
def _search_layer(
    measure: Any,
    data: np.ndarray,
    aux: np.ndarray,
    mode: int,
    query: np.ndarray,
    query_aux: float,
    entry: int,
    entry_distance: float,
    level: int,
    ef: int,
    links0: np.ndarray,
    count0: np.ndarray,
    upper_offset: np.ndarray,
    upper_links: np.ndarray,
    upper_count: np.ndarray,
    visited: np.ndarray,
    tag: int,
    deleted: np.ndarray,
    mask: np.ndarray,
    use_mask: bool,
    skip: int,
    cand_keys: np.ndarray,
    cand_values: np.ndarray,
    res_keys: np.ndarray,
    res_values: np.ndarray,
) -> int:
    """Best ``ef`` acceptable nodes near ``query`` on one level, nearest first.

    ``measure`` is the distance: :func:`fixed_distance` when building,
    :func:`distance` when searching. Every node is traversed; only
    nodes that are not tombstoned, pass the mask and are not ``skip`` enter
    the results. Returns the result count.

    ``cand_keys``/``cand_values`` must hold ``len(visited)`` entries: a node
    enters the candidate heap at most once (it is marked visited first), so
    the heap never outgrows them. Growing them in the loop instead, by
    rebinding the arrays, made numba count references on every step: a
    third of a query's time.
    """
    cand_size = 0
    res_size = 0
    batch = np.empty(links0.shape[1], dtype=np.int64)
    visited[entry] = tag
    cand_size = heap_push(cand_keys, cand_values, cand_size, entry_distance, entry)
    if not deleted[entry] and entry != skip and (not use_mask or mask[entry]):
        res_size = heap_push(res_keys, res_values, res_size, -entry_distance, entry)
    while cand_size > 0:
        current_distance = cand_keys[0]
        current = cand_values[0]
        if res_size >= ef and current_distance > -res_keys[0]:
            break
        cand_size = heap_pop(cand_keys, cand_values, cand_size)
        if level == 0 and cand_size > 0:
            prefetch_links(links0, cand_values[0])  # likely the next node expanded
        # First pass: mark and prefetch every unvisited neighbour, so their
        # vectors load in parallel; second pass: compute the distances.
        fresh = 0
        for nb in neighbours(
            current, level, links0, count0, upper_offset, upper_links, upper_count
        ):
            if visited[nb] == tag:
                continue
            visited[nb] = tag
            prefetch_row(data, nb)
            batch[fresh] = nb
            fresh += 1
        for slot in range(fresh):
            nb = batch[slot]
            d = measure(data, aux, mode, nb, query, query_aux)
            if res_size < ef or d < -res_keys[0]:
                cand_size = heap_push(cand_keys, cand_values, cand_size, d, nb)
                if not deleted[nb] and nb != skip and (not use_mask or mask[nb]):
                    res_size = heap_push(res_keys, res_values, res_size, -d, nb)
                    if res_size > ef:
                        res_size = heap_pop(res_keys, res_values, res_size)
    # Sort results nearest first, in place at the front of the arrays.
    count = res_size
    for slot in range(count - 1, -1, -1):
        key = res_keys[0]
        value = res_values[0]
        res_size = heap_pop(res_keys, res_values, res_size)
        res_keys[slot] = key
        res_values[slot] = value
    for slot in range(count):
        res_keys[slot] = -res_keys[slot]
    # The pops above shuffled the tail; restore the nearest-first order.
    _sort_pairs(res_keys, res_values, count)
    return count


@numba.njit(inline="always", cache=True, nogil=True)
def _sort_pairs(keys: np.ndarray, values: np.ndarray, count: int) -> None:
    """Insertion sort of the first ``count`` pairs by key, ties by value."""
    for i in range(1, count):
        key = keys[i]
        value = values[i]
        j = i - 1
        while j >= 0 and (keys[j] > key or (keys[j] == key and values[j] > value)):
            keys[j + 1] = keys[j]
            values[j + 1] = values[j]
            j -= 1
        keys[j + 1] = key
        values[j + 1] = value


@numba.njit(inline="always", cache=True, nogil=True)
def _greedy_descent(
    measure: Any,
    data: np.ndarray,
    aux: np.ndarray,
    mode: int,
    query: np.ndarray,
    query_aux: float,
    entry: int,
    top_level: int,
    stop_level: int,
    links0: np.ndarray,
    count0: np.ndarray,
    upper_offset: np.ndarray,
    upper_links: np.ndarray,
    upper_count: np.ndarray,
) -> tuple[int, float]:
    """Walk down from ``top_level`` to ``stop_level + 1`` taking the closest neighbour."""
    current = entry
    current_distance = measure(data, aux, mode, entry, query, query_aux)
    for level in range(top_level, stop_level, -1):
        changed = True
        while changed:
            changed = False
            for nb in neighbours(
                current, level, links0, count0, upper_offset, upper_links, upper_count
            ):
                d = measure(data, aux, mode, nb, query, query_aux)
                if d < current_distance:
                    current_distance = d
                    current = nb
                    changed = True
    return current, current_distance


# Search-path entry points: fastmath, since they only rank results for a
# query. The build path inlines the cores above with ``fixed_distance``.
@numba.njit(fastmath=True, cache=True, nogil=True)
def search_layer(
    data: np.ndarray,
    aux: np.ndarray,
    mode: int,
    query: np.ndarray,
    query_aux: float,
    entry: int,
    entry_distance: float,
    level: int,
    ef: int,
    links0: np.ndarray,
    count0: np.ndarray,
    upper_offset: np.ndarray,
    upper_links: np.ndarray,
    upper_count: np.ndarray,
    visited: np.ndarray,
    tag: int,
    deleted: np.ndarray,
    mask: np.ndarray,
    use_mask: bool,
    skip: int,
    cand_keys: np.ndarray,
    cand_values: np.ndarray,
    res_keys: np.ndarray,
    res_values: np.ndarray,
) -> int:
    """:func:`_search_layer` with the search-path distance."""
    return _search_layer(
        distance,
        data,
        aux,
        mode,
        query,
        query_aux,
        entry,
        entry_distance,
        level,
        ef,
        links0,
        count0,
        upper_offset,
        upper_links,
        upper_count,
        visited,
        tag,
        deleted,
        mask,
        use_mask,
        skip,
        cand_keys,
        cand_values,
        res_keys,
        res_values,
    )


@numba.njit(fastmath=True, cache=True, nogil=True)
def greedy_descent(
    data: np.ndarray,
    aux: np.ndarray,
    mode: int,
    query: np.ndarray,
    query_aux: float,
    entry: int,
    top_level: int,
    stop_level: int,
    links0: np.ndarray,
    count0: np.ndarray,
    upper_offset: np.ndarray,
    upper_links: np.ndarray,
    upper_count: np.ndarray,
) -> tuple[int, float]:
    """:func:`_greedy_descent` with the search-path distance."""
    return _greedy_descent(
        distance,
        data,
        aux,
        mode,
        query,
        query_aux,
        entry,
        top_level,
        stop_level,
        links0,
        count0,
        upper_offset,
        upper_links,
        upper_count,
    )


# ------------------------------------------------------ neighbour selection
@numba.njit(cache=True, nogil=True)
def select_heuristic(
    data: np.ndarray,
    aux: np.ndarray,
    mode: int,
    ids: np.ndarray,
    dists: np.ndarray,
    count: int,
    limit: int,
    out: np.ndarray,
) -> int:
    """HNSW's neighbour heuristic over candidates sorted nearest first.

    A candidate is kept when it is closer to the base than to every neighbour
    already kept, so links spread out in different directions.
    """
    if count <= limit:
        out[:count] = ids[:count]
        return count
    chosen = 0
    for i in range(count):
        if chosen >= limit:
            break
        candidate = ids[i]
        good = True
        for j in range(chosen):
            if row_distance(data, aux, mode, candidate, out[j]) < dists[i]:
                good = False
                break
        if good:
            out[chosen] = candidate
            chosen += 1
    return chosen


@numba.njit(cache=True, nogil=True)
def _connect_back(
    data: np.ndarray,
    aux: np.ndarray,
    mode: int,
    node: int,
    new: int,
    level: int,
    limit: int,
    links0: np.ndarray,
    count0: np.ndarray,
    upper_offset: np.ndarray,
    upper_links: np.ndarray,
    upper_count: np.ndarray,
    scratch_ids: np.ndarray,
    scratch_dists: np.ndarray,
    scratch_out: np.ndarray,
) -> None:
    """Add ``new`` to ``node``'s list, shrinking it with the heuristic when full."""
    current = neighbours(node, level, links0, count0, upper_offset, upper_links, upper_count)
    count = current.shape[0]
    for j in range(count):
        if current[j] == new:
            return
    if count < limit:
        if level == 0:
            links0[node, count] = new
            count0[node] = count + 1
        else:
            row = upper_offset[node] + level - 1
            upper_links[row, count] = new
            upper_count[row] = count + 1
        return
    for j in range(count):
        scratch_ids[j] = current[j]
        scratch_dists[j] = row_distance(data, aux, mode, current[j], node)
    scratch_ids[count] = new
    scratch_dists[count] = row_distance(data, aux, mode, new, node)
    _sort_pairs(scratch_dists, scratch_ids, count + 1)
    kept = select_heuristic(
        data, aux, mode, scratch_ids, scratch_dists, count + 1, limit, scratch_out
    )
    _set_neighbours(
        node, level, scratch_out, kept, links0, count0, upper_offset, upper_links, upper_count
    )


# ------------------------------------------------------------------- insert
@numba.njit(cache=True, nogil=True)
def insert_batch(
    data: np.ndarray,
    aux: np.ndarray,
    mode: int,
    nodes: np.ndarray,
    node_levels: np.ndarray,
    m: int,
    ef_construction: int,
    links0: np.ndarray,
    count0: np.ndarray,
    levels: np.ndarray,
    upper_offset: np.ndarray,
    upper_links: np.ndarray,
    upper_count: np.ndarray,
    deleted: np.ndarray,
    visited: np.ndarray,
    cand_keys: np.ndarray,
    cand_values: np.ndarray,
    tag: int,
    entry: int,
    max_level: int,
) -> tuple[int, int, int]:
    """Insert ``nodes`` (rows already in ``data``) in order. Returns (entry, max_level, tag).

    ``cand_keys``/``cand_values``: scratch of ``len(visited)`` entries (see
    :func:`_search_layer`), the caller's, so a call allocates nothing that
    grows with the graph."""
    m0 = links0.shape[1]
    capacity = max(ef_construction, m0) + 1
    res_keys = np.empty(capacity + 1, dtype=np.float32)
    res_values = np.empty(capacity + 1, dtype=np.int64)
    chosen = np.empty(m0 + 1, dtype=np.int64)
    scratch_ids = np.empty(m0 + 1, dtype=np.int64)
    scratch_dists = np.empty(m0 + 1, dtype=np.float32)
    scratch_out = np.empty(m0 + 1, dtype=np.int64)
    no_mask = np.empty(0, dtype=np.bool_)
    for n in range(nodes.shape[0]):
        node = nodes[n]
        level = node_levels[n]
        levels[node] = level
        count0[node] = 0
        for up in range(1, level + 1):
            upper_count[upper_offset[node] + up - 1] = 0
        if entry < 0:
            entry = node
            max_level = level
            continue
        query = data[node]
        query_aux = aux[node]
        current, current_distance = _greedy_descent(
            fixed_distance,
            data,
            aux,
            mode,
            query,
            query_aux,
            entry,
            max_level,
            level,
            links0,
            count0,
            upper_offset,
            upper_links,
            upper_count,
        )
        for lev in range(min(level, max_level), -1, -1):
            tag = next_tag(visited, tag)
            found = _search_layer(
                fixed_distance,
                data,
                aux,
                mode,
                query,
                query_aux,
                current,
                current_distance,
                lev,
                ef_construction,
                links0,
                count0,
                upper_offset,
                upper_links,
                upper_count,
                visited,
                tag,
                deleted,
                no_mask,
                False,
                node,
                cand_keys,
                cand_values,
                res_keys,
                res_values,
            )
            if found == 0:
                continue
            kept = select_heuristic(data, aux, mode, res_values, res_keys, found, m, chosen)
            _set_neighbours(
                node, lev, chosen, kept, links0, count0, upper_offset, upper_links, upper_count
            )
            limit = m0 if lev == 0 else m
            for j in range(kept):
                _connect_back(
                    data,
                    aux,
                    mode,
                    chosen[j],
                    node,
                    lev,
                    limit,
                    links0,
                    count0,
                    upper_offset,
                    upper_links,
                    upper_count,
                    scratch_ids,
                    scratch_dists,
                    scratch_out,
                )
            current = res_values[0]
            current_distance = res_keys[0]
        if level > max_level:
            entry = node
            max_level = level
    return entry, max_level, tag


# ------------------------------------------------------------------- search
@numba.njit(fastmath=True, cache=True, nogil=True)
def search_batch(
    data: np.ndarray,
    aux: np.ndarray,
    mode: int,
    queries: np.ndarray,
    query_aux: np.ndarray,
    k: int,
    ef: int,
    links0: np.ndarray,
    count0: np.ndarray,
    upper_offset: np.ndarray,
    upper_links: np.ndarray,
    upper_count: np.ndarray,
    deleted: np.ndarray,
    mask: np.ndarray,
    use_mask: bool,
    visited: np.ndarray,
    cand_keys: np.ndarray,
    cand_values: np.ndarray,
    tag: int,
    entry: int,
    max_level: int,
    out_ids: np.ndarray,
    out_dists: np.ndarray,
) -> int:
    """k nearest acceptable nodes per query into out arrays (-1 / inf when short)."""
    ef = max(ef, k)
    res_keys = np.empty(ef + 2, dtype=np.float32)
    res_values = np.empty(ef + 2, dtype=np.int64)
    for i in range(queries.shape[0]):
        out_ids[i, :] = -1
        out_dists[i, :] = np.inf
        if entry < 0:
            continue
        query = queries[i]
        current, current_distance = greedy_descent(
            data,
            aux,
            mode,
            query,
            query_aux[i],
            entry,
            max_level,
            0,
            links0,
            count0,
            upper_offset,
            upper_links,
            upper_count,
        )
        tag = next_tag(visited, tag)
        found = search_layer(
            data,
            aux,
            mode,
            query,
            query_aux[i],
            current,
            current_distance,
            0,
            ef,
            links0,
            count0,
            upper_offset,
            upper_links,
            upper_count,
            visited,
            tag,
            deleted,
            mask,
            use_mask,
            -1,
            cand_keys,
            cand_values,
            res_keys,
            res_values,
        )
        for j in range(min(found, k)):
            out_ids[i, j] = res_values[j]
            out_dists[i, j] = res_keys[j]
    return tag


@numba.njit(fastmath=True, cache=True, nogil=True)
def search_one(
    data: np.ndarray,
    aux: np.ndarray,
    mode: int,
    query: np.ndarray,
    k: int,
    ef: int,
    links0: np.ndarray,
    count0: np.ndarray,
    upper_offset: np.ndarray,
    upper_links: np.ndarray,
    upper_count: np.ndarray,
    deleted: np.ndarray,
    visited: np.ndarray,
    cand_keys: np.ndarray,
    cand_values: np.ndarray,
    tag: int,
    entry: int,
    max_level: int,
) -> tuple[np.ndarray, np.ndarray, int]:
    """One unfiltered query: (ids, scores, tag), best first, only what was found.

    What a REST query asks for; everything the batch path does around the
    kernel in Python (the query's norm, output arrays, scores, trimming) is
    done here, so a call costs one dispatch: ``np.einsum`` for the norm alone
    cost 4-8 us a call, more than the rest of the Python around it. The
    candidate heap is the caller's per-thread scratch (``len(visited)``
    entries, see :func:`_search_layer`), not an allocation per call.
    """
    if entry < 0:
        return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float32), tag
    square = np.float32(0.0)
    for j in range(query.shape[0]):
        square += query[j] * query[j]
    query_aux: Any = np.float32(0.0)
    if mode == COSINE:
        if square > 0:
            query_aux = np.float32(1.0) / np.sqrt(square)
    elif mode == L2:
        query_aux = square
    ef = max(ef, k)
    res_keys = np.empty(ef + 2, dtype=np.float32)
    res_values = np.empty(ef + 2, dtype=np.int64)
    current, current_distance = greedy_descent(
        data, aux, mode, query, query_aux, entry, max_level, 0,
        links0, count0, upper_offset, upper_links, upper_count,
    )  # fmt: skip
    tag = next_tag(visited, tag)
    no_mask = np.empty(0, dtype=np.bool_)
    found = search_layer(
        data, aux, mode, query, query_aux, current, current_distance, 0, ef,
        links0, count0, upper_offset, upper_links, upper_count, visited, tag, deleted,
        no_mask, False, -1, cand_keys, cand_values, res_keys, res_values,
    )  # fmt: skip
    count = min(found, k)
    ids = np.empty(count, dtype=np.int64)
    scores = np.empty(count, dtype=np.float32)
    for j in range(count):
        ids[j] = res_values[j]
        d = res_keys[j]
        if mode == COSINE:
            scores[j] = 1.0 - d
        elif mode == L2:
            scores[j] = -np.sqrt(max(d, 0.0))
        else:
            scores[j] = -d
    return ids, scores, tag


# ------------------------------------------------------------------- repair
@numba.njit(cache=True, nogil=True)
def repair(
    data: np.ndarray,
    aux: np.ndarray,
    mode: int,
    m: int,
    links0: np.ndarray,
    count0: np.ndarray,
    levels: np.ndarray,
    upper_offset: np.ndarray,
    upper_links: np.ndarray,
    upper_count: np.ndarray,
    deleted: np.ndarray,
    visited: np.ndarray,
    tag: int,
    size: int,
) -> int:
    """Unlink every tombstoned node and reconnect the nodes that pointed at one.

    A live node that lost neighbours chooses again, with the heuristic, among
    its live neighbours and the live neighbours of the tombstones it pointed
    to. Nodes are visited in id order, so replicas repair identically.
    Tombstoned nodes leave the graph (level -1). Returns the visited tag.
    """
    m0 = links0.shape[1]
    pool = np.empty(m0 * (m0 + 1) + 1, dtype=np.int64)
    pool_dists = np.empty(m0 * (m0 + 1) + 1, dtype=np.float32)
    chosen = np.empty(m0 + 1, dtype=np.int64)
    for node in range(size):
        if levels[node] < 0 or deleted[node]:
            continue
        for level in range(levels[node] + 1):
            current = neighbours(
                node, level, links0, count0, upper_offset, upper_links, upper_count
            )
            touched = False
            for nb in current:
                if deleted[nb]:
                    touched = True
                    break
            if not touched:
                continue
            tag = next_tag(visited, tag)
            visited[node] = tag
            count = 0
            for nb in current:
                if deleted[nb]:
                    for second in neighbours(
                        nb, level, links0, count0, upper_offset, upper_links, upper_count
                    ):
                        if visited[second] != tag and not deleted[second]:
                            visited[second] = tag
                            pool[count] = second
                            count += 1
                elif visited[nb] != tag:
                    visited[nb] = tag
                    pool[count] = nb
                    count += 1
            for j in range(count):
                pool_dists[j] = row_distance(data, aux, mode, pool[j], node)
            _sort_pairs(pool_dists, pool, count)
            limit = m0 if level == 0 else m
            kept = select_heuristic(data, aux, mode, pool, pool_dists, count, limit, chosen)
            _set_neighbours(
                node, level, chosen, kept, links0, count0, upper_offset, upper_links, upper_count
            )
    for node in range(size):
        if deleted[node]:
            deleted[node] = False
            levels[node] = -1
            count0[node] = 0
    return tag
