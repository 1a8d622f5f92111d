"""Register-tiled convolution micro-kernel for every LAS conv kernel on CPUs.

Pattern matched: a PrimFunc with ``las.reduce_block`` (see ``las_compiler.op``): producers ->
one reduction block with loops ``[outer..., pixel, channel, reductions...]`` accumulating into an
intermediate buffer -> one epilogue block writing the output (bias/ReLU/residual/scatter).

Schedule strategy:
1. split pixel by ``pixels`` and channel by ``channels`` (16 = the weight packing), reorder to
   ``outer, pixel_o, channel_o, reductions, pixel_i, channel_i``: a pixels x 16 output tile
   lives in registers across the whole reduction (6x16 on AVX2 = 12 ymm accumulators); a
   tile with fewer accumulators than the core's FMA chains need covers two 16-channel blocks
   (``register_tile.channel_blocks``: 6- and 4-pixel zmm tiles on Intel AVX-512); row-group
   kernels whose weights dominate put the channel tiles outermost, outside the groups;
2. the accumulator buffer becomes ``local`` (registers) and the epilogue is computed at the
   tile, so bias, ReLU, the residual add and scattered stores happen once per output element
   straight from registers;
3. producers (per-patch halo staging) are computed at the patch loop (L1-resident), or stay at
   root and run in parallel (dense pad stage; the row staging of channel-outermost row
   kernels);
4. parallel over patches (sparse), channel tiles (channel-outermost) or pixel tiles (dense);
   unroll pixel_i, vectorize channel_i;
   decompose the reduction so the init is a vector zero.
Deliberately not done: unrolling the reduction (LLVM spills with the 6x16 tile: 73 GFLOP/s
measured), K- or C-blocking, wider channel tiles on AVX2 (all measured slower there in the
probes: 12 ymm accumulators already cover Zen 3's 8 FMA chains).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import tvm
from tvm import s_tir

from ...op.sparse_rows import ROW_KERNELS
from ...register_tile import (
    PIXEL_CHOICES,
    ROW_GROUP,
    UNROLLED_REDUCTION,
    channel_blocks,
    default_pixels,
)
from ..analysis import (
    has_attr,
    has_outer_loop,
    innermost_reduction,
    input_row_bytes,
    is_static,
    kernel_kind,
    loops_by_iter,
    sparse_weights_dominate,
    static_extent,
    vectorize_chunked,
    weights_dominate,
)
from ..base import check
from ..knobs import Knob, KnobSpace
from .base import CPURule, vector_bits


@dataclass(frozen=True)
class Config:
    """Knobs; with tuning, ``pixels`` and ``channel_outer`` are the search space."""

    pixels: int = 6  # output pixels per register tile (an ExprRV while tuning)
    channels: int = 16  # output channels per register tile (= weight packing)
    channel_outer: bool = False  # channel tiles outside pixel tiles (dense kernels only)
    # channel tiles outside the row-group loop too (row kernels whose weights dominate:
    # register_tile.weights_read_once): each weight tile is read once per call
    weights_outer: bool = False
    # the core, for the number of channel blocks per tile (register_tile.channel_blocks);
    # vector_bits 0: one block
    cpu: str = ""
    vector_bits: int = 0
    memory_operands: bool = True  # FMAs can read a weight from memory (x86; not NEON)


def get_config(target: tvm.target.Target, func: tvm.tirx.PrimFunc | None = None) -> Config:
    """The default tile (:func:`las_compiler.register_tile.default_pixels`: 6x16 on AVX2 and
    NEON, 12x16 on AVX-512, 6 pixels over input rows that alias in L1, fewer on NEON where a
    short unrolled reduction keeps its weights in registers) and loop order.

    Row-group kernels whose weights dominate put their channel tiles outside the groups
    (``weights_outer``, :func:`las_compiler.register_tile.weights_read_once`).

    Loop order of dense kernels: channel tiles outermost when the weights are more than twice
    the input (stages 3-4: a weight tile is read once and reused over every pixel tile, and in
    a network the weights arrive cold from DRAM); pixel tiles outermost otherwise. Measured
    here: 7x7x512 3x3 187 -> 216 GFLOP/s; 28x28x128 3x3 225 vs 193 the other way round.
    """
    rows = (input_row_bytes(func) or 0) if func is not None else 0
    live = 0  # weights live in registers: NEON FMAs cannot read memory (register_tile)
    if func is not None and "arm_cpu" in target.keys:
        steps = innermost_reduction(func)
        live = steps if 0 < steps <= UNROLLED_REDUCTION else 0
    return Config(pixels=default_pixels(vector_bits(target), rows, live),
                  channel_outer=weights_dominate(func), **core_facts(target),
                  weights_outer=func is not None and reads_weights_once(func))


def reads_weights_once(func: tvm.tirx.PrimFunc) -> bool:
    """A row-group kernel whose weights dominate: channel tiles outside the groups."""
    return kernel_kind(func) in ROW_KERNELS and sparse_weights_dominate(func)


def core_facts(target: tvm.target.Target) -> dict:
    """The Config fields the tile's channel blocks depend on, read from the target."""
    return {"cpu": str(target.attrs.get("mcpu", "") or ""), "vector_bits": vector_bits(target),
            "memory_operands": "arm_cpu" not in target.keys}


class TiledConv(CPURule):
    """The micro-kernel rule (see the module docstring).

    Knobs: ``pixels`` (the register tile's pixel count) and, for dense kernels without an
    outer patch loop, ``channel_outer`` (structural: a loop order). ``config`` fixes the
    default knobs (tests; None: :func:`get_config` per target and kernel)."""

    def __init__(self, config: Config | None = None):
        self.config = config

    def matches(self, func) -> bool:
        return has_attr(func, "las.reduce_block") and not has_attr(func, "las.chain")

    def knob_space(self, func, target) -> KnobSpace:
        pixels = PIXEL_CHOICES[min(vector_bits(target), 512)]
        if kernel_kind(func) in ROW_KERNELS:  # a tile must divide a group (no predicate)
            pixels = tuple(p for p in pixels if ROW_GROUP % p == 0)
        default = get_config(target, func)
        if default.pixels not in pixels:
            pixels = tuple(sorted({*pixels, default.pixels}))
        # the loop-order knob exists for kernels without an outer patch/group loop (dense)
        outer = (False, True) if is_static(func) and not has_outer_loop(func) else (False,)
        return KnobSpace((Knob("channel_outer", outer, structural=True),
                          Knob("pixels", pixels)))

    def default_knobs(self, func, target) -> dict:
        cfg = self.config or get_config(target, func)
        return {"pixels": cfg.pixels, "channel_outer": cfg.channel_outer,
                "channels": cfg.channels}

    def anchor_block(self, sch, func):
        return sch.get_sblock(str(func.attrs["las.reduce_block"]))

    def schedule(self, sch: s_tir.Schedule, func, target, knobs: dict) -> s_tir.Schedule:
        """Apply the strategy to ``sch`` with these knobs; ``knobs["pixels"]`` may be a
        sampled ExprRV."""
        cfg = Config(pixels=knobs["pixels"], channels=knobs.get("channels", 16),
                     channel_outer=bool(knobs.get("channel_outer", False)),
                     weights_outer=reads_weights_once(func),
                     **core_facts(target))
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
                vectorize_chunked(sch, sch.get_loops(producer)[-1])
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
    roles = loops_by_iter(sch, conv)  # one entry per block iter; None for a unit loop
    outer = [loop for loop in roles[: -(num_reduce + 2)] if loop is not None]
    pixel, channel = roles[-(num_reduce + 2)], roles[-(num_reduce + 1)]
    reductions = [loop for loop in roles[-num_reduce:] if loop is not None]
    per_patch = static_extent(sch, pixel)
    # S = 1 only: with S = 2 (AVX-512, 3 patches per tile) the predicate on the symbolic
    # pixel count stays in the inner loop and the kernel ran 2.4x slower than per patch
    fused_patches = patches_as_pixels and len(outer) == 1 and per_patch == 1
    if fused_patches:
        check(isinstance(cfg.pixels, int), f"{name}: one-pixel patches fix the pixel tile "
                                           "(not a tunable knob)")
        patch = outer.pop()
        pixel = sch.fuse(patch, pixel) if pixel is not None else patch
        cfg = replace(cfg, channel_outer=True)
    extent = sch.get(channel).extent
    check(isinstance(extent, tvm.tirx.IntImm) and int(extent) % cfg.channels == 0,
          f"{name}: {extent} output channels are not a multiple of {cfg.channels}")
    # pixels the tile really holds: a patch smaller than the tile fills only part of it
    tile_pixels = cfg.pixels if isinstance(cfg.pixels, int) else 0  # 0: a tuning draw
    if pixel is None:
        tile_pixels = 1
    elif outer and not fused_patches:
        tile_pixels = min(tile_pixels, per_patch)
    blocks = channel_blocks(tile_pixels, cfg.vector_bits, cfg.cpu, int(extent),
                            cfg.memory_operands) if cfg.vector_bits and tile_pixels else 1
    weights_outer = cfg.weights_outer and bool(outer) and pixel is not None
    channel_o, channel_i = sch.split(channel, [None, cfg.channels])
    lanes = [channel_i]  # the tile's channel loops, innermost last
    if blocks > 1:
        channel_o, channel_b = sch.split(channel_o, [None, blocks])
        lanes = [channel_b, channel_i]
    if pixel is None:  # one pixel per patch (S = 1): the tile is 1 x channels
        pixel_o = pixel_i = None
        sch.reorder(channel_o, *reductions, *lanes)
    else:
        pixel_o, pixel_i = sch.split(pixel, [None, cfg.pixels])
        if weights_outer:
            sch.reorder(channel_o, *outer, pixel_o, *reductions, pixel_i, *lanes)
        elif cfg.channel_outer and not outer:
            sch.reorder(channel_o, pixel_o, *reductions, pixel_i, *lanes)
        else:
            sch.reorder(pixel_o, channel_o, *reductions, pixel_i, *lanes)  # outer outermost
    channel_outer = (cfg.channel_outer and not outer or weights_outer) and pixel_o is not None
    first, last = (channel_o, pixel_o) if channel_outer else (pixel_o, channel_o)
    if parallel:
        sch.parallel(channel_o if weights_outer else outer[0] if outer else
                     first if first is not None else channel_o)
    sch.set_scope(conv, 0, "local")
    sch.reverse_compute_at(epilogue, last if last is not None else channel_o)
    for loop in ([pixel_i] if pixel_i is not None else []) + lanes[:-1]:
        sch.unroll(loop)
    sch.vectorize(channel_i)
    init = sch.decompose_reduction(conv, reductions[0])
    tile_loops = (pixel_i is not None) + len(lanes)  # the init's loops: the whole tile
    for block, loops in ((init, tile_loops), (epilogue, 1 + (pixel_i is not None))):
        inner = sch.get_loops(block)
        for loop in inner[-loops:-1]:
            sch.unroll(loop)
        sch.vectorize(inner[-1])
    if fused_patches:
        # The tile over a symbolic pixel count is predicated, and TVM cannot shrink the
        # accumulator to it (the build fails on an n-sized register array). Index it modulo
        # the tile instead: each thread's tile owns its pixels x channels registers.
        tile, width = cfg.pixels, cfg.channels * blocks
        sch.transform_layout(conv, ("write", 0),
                             lambda p, m, k: ((p * per_patch + m) % tile, k % width),
                             assume_injective_transform=True)
    return [] if weights_outer else outer  # [] : producers stage every patch at root


def _parallel_root_stage(sch: s_tir.Schedule, block) -> None:
    """A whole-map producer (e.g. padding): parallel over rows, vectorised over channels."""
    loops = sch.get_loops(block)
    sch.parallel(sch.fuse(*loops[:-2]) if len(loops) > 2 else loops[0])
    vectorize_chunked(sch, loops[-1])
