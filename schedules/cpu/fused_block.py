"""Whole-block per-patch kernel on CPUs.

Pattern matched: ``las.kernel == "fused_block"`` (three chained reductions conv1 -> conv2 ->
conv3 over one patch list).

Schedule strategy:
1. move the whole chain under the patch loop of conv3 (compute_at, last producer first), so
   one patch's conv1 halo (span^2 x width) and conv2 output (S^2 x width) are per-thread
   scratch buffers that stay in L1/L2;
2. tile each of the three reductions with the same register micro-kernel as every other conv
   (:func:`tile_reduction`), epilogues on the register tile;
3. parallel over patches.
Not done: sharing conv1 halo results between neighbouring patches (would need ordering
between threads; the halo recompute is the price of independence).
"""

from __future__ import annotations

from tvm import s_tir

from ..base import kernel_kind, new_schedule
from .base import CPURule
from .tiled_conv import get_config, tile_reduction


class FusedBlock(CPURule):
    def __init__(self, config=None):
        self.config = config

    def apply(self, func, target) -> s_tir.Schedule | None:
        if not self.is_target_available(target) or kernel_kind(func) != "fused_block":
            return None
        cfg = self.config or get_config(target)
        sch = new_schedule(func)
        get = sch.get_sblock
        patch = sch.get_loops(get("conv3"))[0]
        for name in ("epilogue2", "conv2", "epilogue1", "conv1"):
            sch.compute_at(get(name), patch)
        sch.parallel(patch)  # before tiling: decomposed reductions fail parallel()'s check
        for conv, epilogue, num_reduce in (("conv1", "epilogue1", 1), ("conv2", "epilogue2", 3),
                                           ("conv3", "epilogue3", 1)):
            tile_reduction(sch, get(conv), get(epilogue), num_reduce, cfg, "fused_block",
                           parallel=False)
        return sch
