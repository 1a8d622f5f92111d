"""Masker kernel on CPUs: pooling + 2-logit 1x1 conv + compare.

Pattern matched: ``las.kernel == "masker"``.

Schedule strategy: 1. one task per patch cell (parallel); 2. pooling and logits computed at
the cell, so a cell's pooled vector never leaves L1; 3. the pooling window is walked row by
row with the channel loop innermost and vectorised (contiguous NHWC reads); 4. the 2 x C dot
product is split into :data:`DOT_CHAINS` vectors of lanes (rfactor) and summed at the end: as
one serial chain of C dependent adds it cost more than the pooling.
The S = 1 alternative, the masker as one more tile of a dense conv1 (``op.masker_conv1x1``, a
plain conv for the micro-kernel rule), measured a wash against this kernel plus conv1 on the
dilated pixels (see ``benchmarks/README.md``).
"""

from __future__ import annotations

from tvm import s_tir

from ..analysis import kernel_kind, vectorize_chunked
from .base import CPURule, vector_bits


class MaskerRule(CPURule):
    def matches(self, func) -> bool:
        return kernel_kind(func) == "masker"

    def schedule(self, sch, func, target, knobs) -> s_tir.Schedule:
        pool, logits, compare = (sch.get_sblock(n) for n in ("pool", "logits", "compare"))
        partial = None
        channels = sch.get_loops(logits)[-1]
        vector = vector_bits(target) // 32
        for lanes in (DOT_CHAINS * vector, vector):
            # at least two steps (a unit loop would vanish); rfactor needs the block at root
            if _extent(sch, channels) % lanes == 0 and _extent(sch, channels) > lanes:
                _, lane = sch.split(channels, [None, lanes])
                partial = sch.rfactor(lane, 0)
                break
        cell = sch.get_loops(compare)[0]
        sch.compute_at(logits, cell)
        if partial is not None:
            sch.compute_at(partial, cell)
            lane, logit, step = sch.get_loops(partial)[1:]
            sch.reorder(logit, step, lane)
            sch.vectorize(lane)
        sch.compute_at(pool, cell)
        inner = sch.get_loops(pool)[1:]  # (c, a, b); unit window loops vanish when S*stride = 1
        if len(inner) == 3:
            sch.reorder(inner[1], inner[2], inner[0])
        vectorize_chunked(sch, inner[0])
        sch.parallel(cell)
        return sch


# Independent vector accumulators per logit. The dot product loads two operands per FMA, so
# it issues at most one FMA a cycle (two loads a cycle); four chains hide an FMA latency of 4.
# One chain of 8 lanes made the masker of a 7x7x2048 map latency-bound: 21 -> 11 us (znver3,
# 2 threads; 14x14x1024: 16 -> 14 us).
DOT_CHAINS = 4


def _extent(sch, loop) -> int:
    extent = sch.get(loop).extent
    return int(extent) if hasattr(extent, "value") else -1
