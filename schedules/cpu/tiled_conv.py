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

from dataclasses import dataclass

import tvm
from tvm import s_tir

from ..base import check, kernel_kind, new_schedule
from .base import CPURule, vector_bits


@dataclass(frozen=True)
class Config:
    """Knobs; with tuning, the same fields become the search space."""

    pixels: int = 6  # output pixels per register tile
    channels: int = 16  # output channels per register tile (= weight packing)


def get_config(target: tvm.target.Target) -> Config:
    """AVX2: 6x16 (12 of 16 ymm). AVX-512 (32 zmm, one per 16 channels): 12x16, unmeasured
    here (no AVX-512 machine). NEON (32 q-regs, four per 16 channels): 6x16."""
    bits = vector_bits(target)
    if bits >= 512:
        return Config(pixels=12)
    return Config(pixels=6)


class TiledConv(CPURule):
    """The micro-kernel rule; ``config=None`` picks :func:`get_config` per target."""

    def __init__(self, config: Config | None = None):
        self.config = config

    def apply(self, func, target) -> s_tir.Schedule | None:
        if not self.is_target_available(target) or func.attrs is None:
            return None
        if "las.reduce_block" not in func.attrs:
            return None
        cfg = self.config or get_config(target)
        sch = new_schedule(func)
        conv = sch.get_sblock(str(func.attrs["las.reduce_block"]))
        num_reduce = int(func.attrs["las.num_reduce"])
        producers = sch.get_producers(conv)
        consumers = sch.get_consumers(conv)
        check(len(consumers) == 1, f"{kernel_kind(func)}: expected one epilogue block, "
                                   f"found {len(consumers)}")
        loops = sch.get_loops(conv)
        outer = loops[: -(num_reduce + 2)]
        pixel, channel = loops[-(num_reduce + 2)], loops[-(num_reduce + 1)]
        reductions = loops[-num_reduce:]
        extent = sch.get(channel).extent
        check(isinstance(extent, tvm.tirx.IntImm) and int(extent) % cfg.channels == 0,
              f"{kernel_kind(func)}: {extent} output channels are not a multiple of "
              f"{cfg.channels}")

        pixel_o, pixel_i = sch.split(pixel, [None, cfg.pixels])
        channel_o, channel_i = sch.split(channel, [None, cfg.channels])
        sch.reorder(*outer, pixel_o, channel_o, *reductions, pixel_i, channel_i)
        sch.set_scope(conv, 0, "local")
        sch.reverse_compute_at(consumers[0], channel_o)

        for producer in producers:
            if outer:
                sch.compute_at(producer, outer[-1])
                sch.vectorize(sch.get_loops(producer)[-1])
            else:
                _parallel_root_stage(sch, producer)
        sch.parallel(outer[0] if outer else pixel_o)

        sch.unroll(pixel_i)
        sch.vectorize(channel_i)
        init = sch.decompose_reduction(conv, reductions[0])
        for block in (init, consumers[0]):
            inner = sch.get_loops(block)
            sch.unroll(inner[-2])
            sch.vectorize(inner[-1])
        return sch


def _parallel_root_stage(sch: s_tir.Schedule, block) -> None:
    """A whole-map producer (e.g. padding): parallel over rows, vectorised over channels."""
    loops = sch.get_loops(block)
    sch.parallel(sch.fuse(*loops[:-2]) if len(loops) > 2 else loops[0])
    sch.vectorize(loops[-1])
