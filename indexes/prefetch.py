"""A numba intrinsic that asks the CPU to start loading a vector early.

Graph search touches neighbour vectors in random order; issuing the loads for
all of a node's unvisited neighbours before computing any distance lets the
memory system fetch them in parallel, as hnswlib does with _mm_prefetch.
"""

from __future__ import annotations

from typing import Any

from llvmlite import ir
from numba.core import cgutils, types
from numba.extending import intrinsic


def _prefetcher(lines: int) -> Any:
    """An intrinsic prefetching the first ``lines`` cache lines of ``array[row, :]``."""

    def prefetch(typingctx: Any, array: Any, row: Any) -> Any:  # noqa: ARG001
        return types.void(array, row), _codegen(lines)

    return intrinsic(prefetch)


def _codegen(lines: int) -> Any:
    def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
        array_type, row_type = sig.args
        view = context.make_array(array_type)(context, builder, args[0])
        zero = context.get_constant(types.intp, 0)
        row_index = context.cast(builder, args[1], row_type, types.intp)
        pointer = cgutils.get_item_pointer(
            context, builder, array_type, view, [row_index, zero], wraparound=False
        )
        byte_pointer = builder.bitcast(pointer, ir.IntType(8).as_pointer())
        function_type = ir.FunctionType(
            ir.VoidType(),
            [ir.IntType(8).as_pointer(), ir.IntType(32), ir.IntType(32), ir.IntType(32)],
        )
        function = cgutils.get_or_insert_function(builder.module, function_type, "llvm.prefetch.p0")
        read, locality, data_cache = (ir.Constant(ir.IntType(32), v) for v in (0, 3, 1))
        for line in range(lines):
            address = builder.gep(byte_pointer, [ir.Constant(ir.IntType(64), 64 * line)])
            builder.call(function, [address, read, locality, data_cache])
        return context.get_dummy_value()

    return codegen


# A vector's first 256 bytes (the hardware prefetcher follows on) and a
# node's level-0 link row.
prefetch_row = _prefetcher(4)
prefetch_links = _prefetcher(2)
