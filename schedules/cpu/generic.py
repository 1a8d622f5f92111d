"""Fallback for the few legalised Relax operators left in a LAS network (pooling, the classifier,
mask reshapes): parallel outer loops, vectorised contiguous inner loop.

Pattern matched: any PrimFunc without a ``las.kernel`` attribute that dlight's CPU rules did not
take. Schedule strategy, per root block: 1. fuse the leading spatial loops and run them in
parallel when there is more than one iteration; 2. vectorise the innermost loop when it is
spatial, in chunks (``analysis.vectorize_chunked``). Each step is skipped when TVM rejects it
(e.g. a reduction inside); the function is always returned runnable. Deliberately not done:
tiling. These operators are a few percent of a ResNet's time; anything heavier gets its own
rule.
"""

from __future__ import annotations

import tvm
from tvm import s_tir
from tvm.s_tir.dlight import ScheduleRule

from ..analysis import kernel_kind, root_blocks, vectorize_chunked
from ..base import new_schedule

_ITER_SPATIAL = 0


class ForeignCPURule(ScheduleRule):
    """A rule for the functions that are not our kernels (no ``las.kernel``), on CPUs."""

    def is_target_available(self, target: tvm.target.Target) -> bool:
        return "cpu" in target.keys

    def takes(self, func, target) -> bool:
        return isinstance(func, tvm.tirx.PrimFunc) and self.is_target_available(target) \
            and kernel_kind(func) is None


class Generic(ForeignCPURule):
    def apply(self, func, target, _tunable: bool = False) -> s_tir.Schedule | None:
        if not self.takes(func, target):
            return None
        sch = new_schedule(func)
        for block in root_blocks(sch):
            _parallel_vectorize(sch, block)
        return sch


def _parallel_vectorize(sch: s_tir.Schedule, block) -> None:
    loops = sch.get_loops(block)
    if not loops:
        return
    kinds = [iv.iter_type for iv in sch.get(block).iter_vars]
    if len(kinds) != len(loops):  # already transformed: leave it
        return
    spatial_prefix = next((i for i, kind in enumerate(kinds) if kind != _ITER_SPATIAL),
                          len(kinds))
    if spatial_prefix == len(loops) and len(loops) > 1:
        inner = loops[-1]
        outer = loops[:-1]
        extent = sch.get(inner).extent
        if isinstance(extent, tvm.tirx.IntImm) and int(extent) >= 4:
            _try(lambda loop: vectorize_chunked(sch, loop), inner)
        loops = outer
        spatial_prefix = len(outer)
    if spatial_prefix:
        fused = sch.fuse(*loops[:spatial_prefix]) if spatial_prefix > 1 else loops[0]
        extent = sch.get(fused).extent
        if not isinstance(extent, tvm.tirx.IntImm) or int(extent) > 1:
            _try(sch.parallel, fused)


def _try(primitive, loop) -> None:
    try:
        primitive(loop)
    except s_tir.ScheduleError:
        pass
