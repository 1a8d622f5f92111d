"""The tunable knobs of our schedule rules, as a meta_schedule design space.

The hand rules are already fast; tuning searches the few knobs they expose (see
``schedules/cpu/tiled_conv.Config``): the register tile's pixel count and, for dense kernels,
whether channel tiles run outermost. A design space is one traced schedule per loop order (a
structural choice a decision cannot switch) with the pixel tile drawn by
``sample_categorical``, so meta_schedule's search, mutators, cost models and databases work on
it unchanged, and a record is a stock trace whose decisions *are* the knob values.

Applying a record (``knobs_from_trace``) re-runs the rule with those knob values instead of
replaying the trace, which also works for the symbolic-n kernel the trace was not tuned on
(the notes' tune-then-replay route, at the level of knobs).
"""

from __future__ import annotations

from dataclasses import dataclass

import tvm
from tvm import s_tir

from ..op.sparse_rows import ROW_GROUP
from ..schedules.base import kernel_kind
from ..schedules.cpu.base import vector_bits
from ..schedules.cpu.tiled_conv import Config, TiledConv, get_config

# register tiles the rule can hold without spilling: 16 output channels are 1 zmm (AVX-512,
# 32 registers), 2 ymm (AVX2, 16) or 4 q (NEON, 32); a tile needs pixels x that + weights
PIXELS = {512: (4, 6, 8, 12, 16, 24), 256: (2, 3, 4, 6), 128: (2, 3, 4, 6)}
ROW_KERNELS = ("conv1x1_rows", "gather_conv3x3_rows", "conv1x1_scatter_add_rows")


@dataclass(frozen=True)
class KnobSpace:
    pixels: tuple[int, ...]
    channel_outer: tuple[bool, ...]

    @property
    def size(self) -> int:
        return len(self.pixels) * len(self.channel_outer)


def _static(func: tvm.tirx.PrimFunc) -> bool:
    return all(isinstance(d, tvm.tirx.IntImm) for p in func.params
               for d in (getattr(p, "shape", None) or ()))


def knob_space(func: tvm.tirx.PrimFunc, target: tvm.target.Target) -> KnobSpace | None:
    """The knobs of ``func``'s rule on ``target``; None for kernels without knobs (scans,
    maskers, element-wise, patch chains)."""
    if func.attrs is None or "las.reduce_block" not in func.attrs or "las.chain" in func.attrs:
        return None
    pixels = PIXELS[min(vector_bits(target), 512)]
    if kernel_kind(func) in ROW_KERNELS:  # a tile must divide a row group (no predicate)
        pixels = tuple(p for p in pixels if ROW_GROUP % p == 0)
    default = get_config(target, func)
    if default.pixels not in pixels:
        pixels = tuple(sorted({*pixels, default.pixels}))
    # the loop-order knob exists for kernels without an outer patch/group loop (dense convs)
    outer = (False, True) if _static(func) and not _has_outer_loop(func) else (False,)
    return KnobSpace(pixels, outer)


def _has_outer_loop(func: tvm.tirx.PrimFunc) -> bool:
    from .kernel_model import _reduce_block

    block = _reduce_block(func)
    return len(block.iter_vars) - int(func.attrs["las.num_reduce"]) > 2


def schedule_with_knobs(sch: s_tir.Schedule, func, target, pixels, channel_outer: bool):
    """Our rule on ``sch`` with these knobs (``pixels`` an int or a sampled ExprRV)."""
    default = get_config(target, func)
    cfg = Config(pixels=pixels, channels=default.channels, channel_outer=channel_outer)
    TiledConv(cfg).schedule(sch, func, cfg)
    return sch


def design_space(target: tvm.target.Target):
    """A ``ScheduleFn`` body: one schedule per loop order, pixel tile sampled."""

    def sch_fn(sch: s_tir.Schedule) -> list[s_tir.Schedule]:
        func = sch.mod["main"]
        space = knob_space(func, target)
        if space is None:
            raise ValueError(f"{kernel_kind(func)} has no tunable knobs")
        out = []
        for outer in space.channel_outer:
            branch = sch.copy()
            # the loop order as a one-candidate draw (never mutated), kept alive in the trace
            # by an annotation of the reduction block
            order = branch.sample_categorical(candidates=[int(outer)], probs=[1.0])
            pixels = branch.sample_categorical(
                candidates=list(space.pixels), probs=[1.0 / len(space.pixels)] * len(space.pixels))
            branch.annotate(branch.get_sblock(str(func.attrs["las.reduce_block"])),
                            "las.channel_outer", order)
            out.append(schedule_with_knobs(branch, func, target, pixels, outer))
        return out

    return sch_fn


@dataclass(frozen=True)
class Knobs:
    pixels: int
    channel_outer: bool


def knobs_from_trace(trace: s_tir.schedule.Trace) -> Knobs:
    """Knob values of a :func:`design_space` trace: its two draws, loop order then pixels."""
    draws = [inst for inst in trace.insts if inst.kind.name == "SampleCategorical"]
    if len(draws) != 2:
        raise ValueError(f"not a las-compiler design-space trace ({len(draws)} draws, "
                         f"expected the loop order and the pixel tile)")
    outer, pixels = ([int(c) for c in inst.attrs[0]][int(trace.get_decision(inst))]
                     for inst in draws)
    return Knobs(pixels, bool(outer))
