"""The masker on CUDA in one launch: one thread block per patch cell.

Pattern matched: ``las.kernel == "masker"`` (pool + 2-logit 1x1 conv + compare).

Schedule strategy: 1. the cell loop is ``blockIdx.x``; 2. thread t of T owns channels
t*k .. t*k + k - 1 (k = C / T): it pools them over the cell's window into registers (a warp
reads 32 k consecutive floats of one NHWC pixel per window position) and 3. multiplies them
by the masker's weights for both logits (``rfactor`` over the threads: per-thread partial
sums, in registers too, so no barrier and no shared memory); 4. the two sums across the
threads are TVM's cross-thread reduction (the reduction loop on ``threadIdx.x``: warp
shuffles, then one shared-memory step between warps); 5. every thread then holds the logits
and writes the same flag. T is the largest warp multiple up to 256 that divides C.

Before this rule the masker went through dlight's fallback: three launches per block
(pooling, logits, compare), the logits summed serially, one thread per (cell, logit), C
products each. The latency predictor has always priced the masker as one launch.
"""

from __future__ import annotations

from tvm import s_tir

from ..analysis import kernel_kind
from ..base import check
from .base import GPURule, Limits

MAX_THREADS = 256  # a ResNet masker has 64-2048 channels: 256 threads pool 1-8 each


class MaskerGPU(GPURule):
    def matches(self, func) -> bool:
        return kernel_kind(func) == "masker"

    def schedule(self, sch, func, target, knobs) -> s_tir.Schedule:
        limits = Limits.of(target)
        pool, logits, compare = (sch.get_sblock(n) for n in ("pool", "logits", "compare"))
        channels = sch.get_loops(logits)[-1]
        threads = _threads(_extent(sch, channels), min(MAX_THREADS, limits.threads),
                           limits.warp)
        lane, _ = sch.split(channels, [threads, None])  # thread t: channels t*k .. t*k+k-1
        partial = sch.rfactor(lane, 0)  # partial[t, cell, logit]
        cell = sch.get_loops(compare)[0]
        sch.bind(cell, "blockIdx.x")
        sch.compute_at(logits, cell)
        sch.compute_at(partial, cell)
        sch.compute_at(pool, cell)
        # pooling: (c, window...) -> (t, c_inner, window...), t on threadIdx.x; each thread
        # pools (and later reads) only its own k channels: registers, no barrier
        c, *window = sch.get_loops(pool)[1:]
        t, own = sch.split(c, [threads, None])
        sch.reorder(t, *window, own)  # per window pixel, the thread's channels side by side
        sch.bind(t, "threadIdx.x")
        sch.set_scope(pool, 0, "local")
        # thread t's partial dot products over its channels, for both logits
        sch.bind(sch.get_loops(partial)[1], "threadIdx.x")  # (t, logit[, step]) under cell
        sch.set_scope(partial, 0, "local")
        # the sum over the threads: the reduction loop on threadIdx.x (warp shuffles)
        t, logit = sch.get_loops(logits)[1:]  # compute_at left the reduction outermost
        sch.reorder(logit, t)
        sch.bind(t, "threadIdx.x")
        sch.set_scope(logits, 0, "local")  # the all-reduce leaves the sums in every thread
        return sch


def _threads(channels: int, most: int, warp: int) -> int:
    """The largest multiple of the warp up to ``most`` that divides ``channels``, else the
    largest divisor of ``channels`` up to ``most`` (a narrow test layer)."""
    check(channels > 0, "masker: the channel count must be static")
    for t in range(most - most % warp, 0, -warp):
        if channels % t == 0:
            return t
    return max(t for t in range(1, min(most, channels) + 1) if channels % t == 0)


def _extent(sch, loop) -> int:
    extent = sch.get(loop).extent
    return int(extent) if hasattr(extent, "value") else -1
