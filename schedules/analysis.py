"""IR analysis shared by the schedule rules, the tuner and its kernel model: what a kernel
is, where its loops are, how it reads its input. One copy of each question."""

from __future__ import annotations

import math

import numpy as np
import tvm
from tvm import s_tir

from .base import check, new_schedule


def kernel_kind(func: tvm.tirx.PrimFunc) -> str | None:
    """The ``las.kernel`` name our kernel generators set (None for foreign functions)."""
    attrs = func.attrs
    return str(attrs["las.kernel"]) if attrs is not None and "las.kernel" in attrs else None


def has_attr(func: tvm.tirx.PrimFunc, key: str) -> bool:
    return func.attrs is not None and key in func.attrs


def reduce_block(func: tvm.tirx.PrimFunc):
    """The (unscheduled) reduction block named by ``las.reduce_block``."""
    sch = new_schedule(func)
    return sch.get(sch.get_sblock(str(func.attrs["las.reduce_block"])))


def is_static(func: tvm.tirx.PrimFunc) -> bool:
    """No parameter buffer has a symbolic extent (dense kernels; sparse ones have n)."""
    return all(isinstance(d, tvm.tirx.IntImm) for p in func.params
               for d in (getattr(p, "shape", None) or ()))


def has_outer_loop(func: tvm.tirx.PrimFunc) -> bool:
    """The reduction block has loops outside ``[pixel, channel]`` (patches, row groups)."""
    block = reduce_block(func)
    return len(block.iter_vars) - int(func.attrs["las.num_reduce"]) > 2


def param_shape(func: tvm.tirx.PrimFunc, index: int) -> list[int]:
    """Static extents of a parameter's buffer (symbolic extents count 1)."""
    shape = getattr(func.params[index], "shape", None) or ()
    return [int(d) if isinstance(d, tvm.tirx.IntImm) else 1 for d in shape]


def param_bytes(func: tvm.tirx.PrimFunc, index: int) -> float:
    return float(np.prod(param_shape(func, index))) * 4


def input_row_bytes(func: tvm.tirx.PrimFunc) -> int:
    """Bytes between the input rows of one pixel tile: the input's channels (fp32), times the
    stride when a kernel without a patch loop reads an NHWC map at a stride (0: unknown).
    Kernels with a patch or row-group loop read staged windows or listed rows, one row of
    channels each."""
    if not has_attr(func, "las.reduce_block") or not func.params:
        return 0
    shape = getattr(func.params[0], "shape", None)
    if not shape or not isinstance(shape[-1], tvm.tirx.IntImm):
        return 0
    row = int(shape[-1]) * 4
    block = reduce_block(func)
    spatial = block.iter_vars[: len(block.iter_vars) - int(func.attrs["las.num_reduce"])]
    dims = [int(d) for d in shape if isinstance(d, tvm.tirx.IntImm)]
    pixel = spatial[-2].dom.extent if len(spatial) == 2 else None
    if len(dims) == 4 == len(shape) and isinstance(pixel, tvm.tirx.IntImm) and int(pixel) > 0:
        stride = max(1, round(float(np.sqrt(dims[0] * dims[1] * dims[2] / int(pixel)))))
        row *= stride
    return row


def innermost_reduction(func: tvm.tirx.PrimFunc) -> int:
    """Static extent of the reduction block's innermost reduction (0 when symbolic)."""
    extent = reduce_block(func).iter_vars[-1].dom.extent
    return int(extent) if isinstance(extent, tvm.tirx.IntImm) else 0


def weights_dominate(func: tvm.tirx.PrimFunc | None) -> bool:
    """Packed weights ``w`` larger than twice the first (input) parameter, static shapes."""
    if func is None or not is_static(func):
        return False  # symbolic (sparse) kernels have an outer patch loop instead
    sizes = [(str(p.name), int(np.prod([int(d) for d in p.shape]))) for p in func.params
             if getattr(p, "shape", None) is not None]
    weights = dict(sizes).get("w")
    return weights is not None and bool(sizes) and weights > 2 * sizes[0][1]


def sparse_weights_dominate(func: tvm.tirx.PrimFunc) -> bool:
    """:func:`las_compiler.register_tile.weights_read_once` for a kernel: its packed weights
    ``w`` against its first parameter (symbolic extents counted as 1)."""
    from ..register_tile import weights_read_once

    names = [str(p.name) for p in func.params]
    if "w" not in names:
        return False
    return weights_read_once(param_bytes(func, names.index("w")), param_bytes(func, 0))


def static_extent(sch: s_tir.Schedule, loop) -> int:
    """Static extent of a loop (1 for a missing unit loop; large for a symbolic one)."""
    if loop is None:
        return 1
    extent = sch.get(loop).extent
    return int(extent) if isinstance(extent, tvm.tirx.IntImm) else 1 << 30


VECTOR_CHUNK = 64  # elements: 4 zmm / 8 ymm / 16 NEON registers per vectorised step


def vectorize_chunked(sch: s_tir.Schedule, loop, chunk: int = VECTOR_CHUNK) -> None:
    """Vectorise a contiguous inner loop in steps of at most ``chunk`` elements.

    Why not the whole loop: ``vectorize`` on a 2048-long channel loop makes LLVM build one
    2048-lane vector operation. Codegen then takes seconds per kernel (a 7x7x2048 reshape:
    5.7 s; LAS-ResNet-50's reshapes were 43 of its 58 s of LLVM time) and an index with a
    modulo in it becomes a 2048-lane gather. Static extents above ``chunk`` are split by
    their largest power-of-two divisor up to ``chunk`` (no tail); a symbolic extent, or one
    without a divisor of at least 4, keeps the old behaviour.
    """
    extent = static_extent(sch, loop)
    lanes = math.gcd(extent, chunk)
    if extent > chunk and extent < 1 << 30 and lanes >= 4:
        _, loop = sch.split(loop, [None, lanes])
    sch.vectorize(loop)


def loops_by_iter(sch: s_tir.Schedule, block) -> list:
    """The loop bound to each iterator of ``block`` (None where no loop remains: schedule
    primitives such as compute_at drop unit-extent loops, so positions alone mislead)."""
    loops = sch.get_loops(block)
    realize = sch.get(loops[-1]).body
    check(isinstance(realize, s_tir.SBlockRealize),
          "expected the reduction block directly under its innermost loop")
    by_var = {sch.get(loop).loop_var: loop for loop in loops}
    return [by_var.get(value) if isinstance(value, tvm.tirx.Var) else None
            for value in realize.iter_values]


def root_blocks(sch: s_tir.Schedule) -> list:
    """The blocks directly under the root block ([] when there is no root block)."""
    try:
        return list(sch.get_child_blocks(sch.get_sblock("root")))
    except Exception:  # noqa: BLE001 - TVM raises its own error type for a missing block
        return []
