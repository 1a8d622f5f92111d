"""Window pooling (max / average pooling legalised from Relax, NHWC) on CPUs.

Pattern matched: a foreign PrimFunc (no ``las.kernel``) whose last root block has loops
``[spatial..., channel, reductions...]`` (the window), with the channel loop the innermost
spatial loop, static and at least one vector wide; optional producer blocks before it
(the padding legalisation materialises: ``pad_temp``), and optional consumer blocks after
it (average pooling's divide).

Why a rule of its own: the generic fallback cannot vectorise a block whose innermost loop is
a reduction, and it keeps the padded copy of the input. For ResNet's stem pool (112x112x64,
3x3 stride 2) that was 0.53-0.72 ms, about 1 % of the network, against 0.05-0.06 ms with
this schedule (2-core Zen 3 VM).

Schedule strategy:
1. padding producers are inlined (the window reads the input through a bounds test: no
   3 MB copy written and read back);
2. the window's reductions move outside the channel loop, so each output pixel's channels
   are a vector accumulator updated once per window tap;
3. the output pixels run in parallel, the channels are vectorised in chunks
   (``analysis.vectorize_chunked``), and the reduction init is a vector store;
4. consumers (the divide of average pooling) are computed at the pixel and vectorised.
"""

from __future__ import annotations

import tvm
from tvm import s_tir

from ..analysis import root_blocks, static_extent, vectorize_chunked
from ..base import new_schedule
from .generic import ForeignCPURule

_SPATIAL, _REDUCE = 0, 2
MIN_CHANNELS = 4  # fewer channels than a vector: the generic rule does as well


class WindowPool(ForeignCPURule):
    def apply(self, func, target, _tunable: bool = False) -> s_tir.Schedule | None:
        if not self.takes(func, target):
            return None
        sch = new_schedule(func)
        window = _window_block(sch)
        if window is None:
            return None
        for block in root_blocks(sch):
            if block is not window and _produces_for(sch, block, window):
                try:
                    sch.compute_inline(block)
                except s_tir.ScheduleError:
                    return None
        loops = sch.get_loops(window)
        kinds = [iv.iter_type for iv in sch.get(window).iter_vars]
        first_reduce = kinds.index(_REDUCE)
        spatial, reductions = loops[:first_reduce], loops[first_reduce:]
        channel = spatial[-1]
        sch.reorder(*spatial[:-1], *reductions, channel)
        pixels = sch.fuse(*spatial[:-1]) if len(spatial) > 2 else spatial[0]
        sch.parallel(pixels)
        # vectorise before decomposing: the dataflow check rejects it on the update block
        vectorize_chunked(sch, channel)
        for consumer in sch.get_consumers(window):
            sch.reverse_compute_at(consumer, pixels)
            vectorize_chunked(sch, sch.get_loops(consumer)[-1])
        init = sch.decompose_reduction(window, reductions[0])
        vectorize_chunked(sch, sch.get_loops(init)[-1])
        return sch


def _window_block(sch: s_tir.Schedule):
    """The block that reduces over the window, if the function has the pattern."""
    candidates = [b for b in root_blocks(sch)
                  if _REDUCE in [iv.iter_type for iv in sch.get(b).iter_vars]]
    if len(candidates) != 1:
        return None
    block = candidates[0]
    kinds = [iv.iter_type for iv in sch.get(block).iter_vars]
    loops = sch.get_loops(block)
    if len(kinds) != len(loops) or _REDUCE not in kinds:
        return None
    first_reduce = kinds.index(_REDUCE)
    if first_reduce < 2 or any(k != _SPATIAL for k in kinds[:first_reduce]) \
            or any(k != _REDUCE for k in kinds[first_reduce:]):
        return None
    channels = static_extent(sch, loops[first_reduce - 1])
    if not MIN_CHANNELS <= channels < 1 << 30:  # static, at least a vector
        return None
    # the channel loop must index the innermost dimension of what the block writes
    write = sch.get(block).writes[0]
    last = write.region[-1].min
    channel_var = sch.get(block).iter_vars[first_reduce - 1].var
    if not (isinstance(last, tvm.tirx.Var) and last.same_as(channel_var)):
        return None
    return block


def _produces_for(sch: s_tir.Schedule, block, window) -> bool:
    target = sch.get(window)
    return any(sch.get(c).same_as(target) for c in sch.get_consumers(block))
