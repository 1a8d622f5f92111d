"""Register-tiled convolution micro-kernel for every LAS conv kernel on CPUs.

Pattern matched: a PrimFunc with ``las.reduce_block`` (see ``las_compiler.op``): producers ->
one reduction block with loops ``[outer..., pixel, channel, reductions...]`` accumulating into an
intermediate buffer -> one epilogue block writing the output (bias/ReLU/residual/scatter).

Schedule strategy:
1. split pixel by ``pixels`` and channel by ``channels`` (16 = the weight packing), reorder to
   ``outer, pixel_o, channel_o, reductions, pixel_i, channel_i``: a pixels x 16 output tile
   lives in registers across the whole reduction (6x16 on AVX2 = 12 ymm accumulators);
2. the accumulator buffer becomes ``local`` (registers) and the epilogue is computed at the
   tile, so bias, ReLU, the residual add and scattered stores happen once per output element
   straight from registers;
3. producers (per-patch halo staging) are computed at the patch loop (L1-resident), or stay at
   root and run in parallel (dense pad stage);
4. parallel over patches (sparse) or pixel tiles (dense); unroll pixel_i, vectorize channel_i;
   decompose the reduction so the init is a vector zero.
Deliberately not done: unrolling the reduction (LLVM spills with the 6x16 tile: 73 GFLOP/s
measured), K- or C-blocking, wider channel tiles (all measured slower on AVX2 in the probes).
"""

from __future__ import annotations

import platform
from dataclasses import dataclass

import numpy as np
import tvm
from tvm import s_tir

from ..base import check, kernel_kind, new_schedule
from .base import CPURule, vector_bits


@dataclass(frozen=True)
class Config:
    """Knobs; with tuning, the same fields become the search space."""

    pixels: int = 6  # output pixels per register tile (an ExprRV while tuning)
    channels: int = 16  # output channels per register tile (= weight packing)
    channel_outer: bool = False  # channel tiles outside pixel tiles (dense kernels only)


def get_config(target: tvm.target.Target, func: tvm.tirx.PrimFunc | None = None) -> Config:
    """AVX2: 6x16 (12 of 16 ymm). AVX-512 (32 zmm, one per 16 channels): 12x16 (measured on
    Zen 4). NEON (32 q-regs, four per 16 channels): 6x16.

    Loop order of dense kernels: channel tiles outermost when the weights are more than twice
    the input (stages 3-4: a weight tile is read once and reused over every pixel tile, and in
    a network the weights arrive cold from DRAM); pixel tiles outermost otherwise. Measured
    here: 7x7x512 3x3 187 -> 216 GFLOP/s; 28x28x128 3x3 225 vs 193 the other way round.

    Pixel tile and L1 associativity (x86): a tile's input rows lie ``input_row_bytes`` apart;
    rows a multiple of 4 KB apart (1024 channels, or 512 read at stride 2) map to the same
    L1 sets, and an 8-way L1 holds 7 of them beside the weights. A 12-pixel tile over such
    rows thrashes L1: measured here 1.3-1.9x slower than a 6-pixel tile (stage-3/4 conv1 on
    1024/2048 channels, stride-2 downsample convs), so those kernels get 6 pixels.
    """
    pixels = 12 if vector_bits(target) >= 512 else 6
    if func is not None and _is_x86(target) and pixels > L1_ROWS_HELD_4K:
        if (input_row_bytes(func) or 1) % L1_WAY_BYTES == 0:
            pixels = 6
    return Config(pixels=pixels, channel_outer=_weights_dominate(func))


L1_WAY_BYTES = 4096  # x86 L1D: 8 ways (Zen, Skylake) or 12 ways (Ice Lake and later) of 4 KB
L1_ROWS_HELD_4K = 7  # rows 4 KB apart an 8-way L1 keeps beside the weights


def _is_x86(target: tvm.target.Target) -> bool:
    """x86 by the target's triple (a bare ``llvm`` target: this machine)."""
    triple = str(target.attrs.get("mtriple", "") or "")
    return triple.startswith("x86_64") if triple else platform.machine() in ("x86_64", "AMD64")


def input_row_bytes(func: tvm.tirx.PrimFunc) -> int:
    """Bytes between the input rows of one pixel tile: the input's channels (fp32), times the
    stride when a kernel without a patch loop reads an NHWC map at a stride (0: unknown).
    Kernels with a patch or row-group loop read staged windows or listed rows, one row of
    channels each."""
    if func.attrs is None or "las.reduce_block" not in func.attrs or not func.params:
        return 0
    shape = getattr(func.params[0], "shape", None)
    if not shape or not isinstance(shape[-1], tvm.tirx.IntImm):
        return 0
    row = int(shape[-1]) * 4
    sch = s_tir.Schedule(tvm.IRModule({"main": func}))
    block = sch.get(sch.get_sblock(str(func.attrs["las.reduce_block"])))
    spatial = block.iter_vars[: len(block.iter_vars) - int(func.attrs["las.num_reduce"])]
    dims = [int(d) for d in shape if isinstance(d, tvm.tirx.IntImm)]
    pixel = spatial[-2].dom.extent if len(spatial) == 2 else None
    if len(dims) == 4 == len(shape) and isinstance(pixel, tvm.tirx.IntImm) and int(pixel) > 0:
        stride = max(1, round(float(np.sqrt(dims[0] * dims[1] * dims[2] / int(pixel)))))
        row *= stride
    return row


def _weights_dominate(func: tvm.tirx.PrimFunc | None) -> bool:
    """Packed weights ``w`` larger than twice the first (input) parameter, static shapes."""
    if func is None:
        return False
    sizes = []
    for param in func.params:
        shape = getattr(param, "shape", None)
        if shape is None or not all(isinstance(d, tvm.tirx.IntImm) for d in shape):
            return False  # symbolic (sparse) kernels have an outer patch loop instead
        sizes.append((str(param.name), int(np.prod([int(d) for d in shape]))))
    weights = dict(sizes).get("w")
    return weights is not None and bool(sizes) and weights > 2 * sizes[0][1]

class TiledConv(CPURule):
    """The micro-kernel rule; ``config=None`` picks :func:`get_config` per target."""

    def __init__(self, config: Config | None = None):
        self.config = config

    def apply(self, func, target) -> s_tir.Schedule | None:
        if not self.is_target_available(target) or func.attrs is None:
            return None
        if "las.reduce_block" not in func.attrs:
            return None
        return self.schedule(new_schedule(func), func, self.config or get_config(target, func))

    def schedule(self, sch: s_tir.Schedule, func, cfg: Config) -> s_tir.Schedule:
        """Apply the strategy to ``sch`` (a fresh or a traced meta_schedule schedule of
        ``func``) with knobs ``cfg``; ``cfg.pixels`` may be a sampled ExprRV."""
        conv = sch.get_sblock(str(func.attrs["las.reduce_block"]))
        num_reduce = int(func.attrs["las.num_reduce"])
        producers = sch.get_producers(conv)
        consumers = sch.get_consumers(conv)
        check(len(consumers) == 1, f"{kernel_kind(func)}: expected one epilogue block, "
                                   f"found {len(consumers)}")
        outer = tile_reduction(sch, conv, consumers[0], num_reduce, cfg, kernel_kind(func),
                               patches_as_pixels=True)
        for producer in producers:
            if outer:
                sch.compute_at(producer, outer[-1])
                sch.vectorize(sch.get_loops(producer)[-1])
            else:
                _parallel_root_stage(sch, producer)
        return sch


def tile_reduction(sch: s_tir.Schedule, conv, epilogue, num_reduce: int, cfg: Config,
                   name: str = "", parallel: bool = True, patches_as_pixels: bool = False) -> list:
    """Steps 1, 2 and 4 of the strategy on one reduction block; returns its outer loops.

    Loops of ``conv`` must be ``[outer..., pixel, channel, reductions (num_reduce)...]``.
    ``parallel`` marks the first outer loop (or the pixel tiles) parallel; it must happen
    before the reduction is decomposed, which ``parallel()``'s dataflow check rejects.

    ``patches_as_pixels``: when a patch is one pixel (S = 1), the patch and pixel loops fuse
    into one pixel axis over all active pixels, tiled as usual, channel tiles outermost: a
    1 x 16 tile per patch reloads every weight for every patch. Producers (window staging)
    then run once at root instead of per patch.
    """
    roles = _loops_by_iter(sch, conv)  # one entry per block iter; None for a unit loop
    outer = [loop for loop in roles[: -(num_reduce + 2)] if loop is not None]
    pixel, channel = roles[-(num_reduce + 2)], roles[-(num_reduce + 1)]
    reductions = [loop for loop in roles[-num_reduce:] if loop is not None]
    per_patch = _extent(sch, pixel)
    # S = 1 only: with S = 2 (AVX-512, 3 patches per tile) the predicate on the symbolic
    # pixel count stays in the inner loop and the kernel ran 2.4x slower than per patch
    fused_patches = patches_as_pixels and len(outer) == 1 and per_patch == 1
    if fused_patches:
        check(isinstance(cfg.pixels, int), f"{name}: one-pixel patches fix the pixel tile "
                                           "(not a tunable knob)")
        patch = outer.pop()
        pixel = sch.fuse(patch, pixel) if pixel is not None else patch
        cfg = Config(cfg.pixels, cfg.channels, channel_outer=True)
    extent = sch.get(channel).extent
    check(isinstance(extent, tvm.tirx.IntImm) and int(extent) % cfg.channels == 0,
          f"{name}: {extent} output channels are not a multiple of {cfg.channels}")
    channel_o, channel_i = sch.split(channel, [None, cfg.channels])
    if pixel is None:  # one pixel per patch (S = 1): the tile is 1 x channels
        pixel_o = pixel_i = None
        sch.reorder(channel_o, *reductions, channel_i)
    else:
        pixel_o, pixel_i = sch.split(pixel, [None, cfg.pixels])
        if cfg.channel_outer and not outer:
            sch.reorder(channel_o, pixel_o, *reductions, pixel_i, channel_i)
        else:
            sch.reorder(pixel_o, channel_o, *reductions, pixel_i, channel_i)  # outer outermost
    channel_outer = cfg.channel_outer and not outer and pixel_o is not None
    first, last = (channel_o, pixel_o) if channel_outer else (pixel_o, channel_o)
    if parallel:
        sch.parallel(outer[0] if outer else first if first is not None else channel_o)
    sch.set_scope(conv, 0, "local")
    sch.reverse_compute_at(epilogue, last if last is not None else channel_o)
    if pixel_i is not None:
        sch.unroll(pixel_i)
    sch.vectorize(channel_i)
    init = sch.decompose_reduction(conv, reductions[0])
    for block in (init, epilogue):
        inner = sch.get_loops(block)
        if pixel_i is not None:
            sch.unroll(inner[-2])
        sch.vectorize(inner[-1])
    if fused_patches:
        # The tile over a symbolic pixel count is predicated, and TVM cannot shrink the
        # accumulator to it (the build fails on an n-sized register array). Index it modulo
        # the tile instead: each thread's tile owns its pixels x channels registers.
        tile, lanes = cfg.pixels, cfg.channels
        sch.transform_layout(conv, ("write", 0),
                             lambda p, m, k: ((p * per_patch + m) % tile, k % lanes),
                             assume_injective_transform=True)
    return outer


def _extent(sch: s_tir.Schedule, loop) -> int:
    """Static extent of a loop (1 for a missing unit loop; large for a symbolic one)."""
    if loop is None:
        return 1
    extent = sch.get(loop).extent
    return int(extent) if isinstance(extent, tvm.tirx.IntImm) else 1 << 30


def _loops_by_iter(sch: s_tir.Schedule, block) -> list:
    """The loop bound to each iterator of ``block`` (None where no loop remains: schedule
    primitives such as compute_at drop unit-extent loops, so positions alone mislead)."""
    loops = sch.get_loops(block)
    realize = sch.get(loops[-1]).body
    check(isinstance(realize, s_tir.SBlockRealize),
          "expected the reduction block directly under its innermost loop")
    by_var = {sch.get(loop).loop_var: loop for loop in loops}
    return [by_var.get(value) if isinstance(value, tvm.tirx.Var) else None
            for value in realize.iter_values]


def _parallel_root_stage(sch: s_tir.Schedule, block) -> None:
    """A whole-map producer (e.g. padding): parallel over rows, vectorised over channels."""
    loops = sch.get_loops(block)
    sch.parallel(sch.fuse(*loops[:-2]) if len(loops) > 2 else loops[0])
    sch.vectorize(loops[-1])
