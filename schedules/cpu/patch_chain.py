"""Chains of convolutions per patch (whole-block fusion, conv1 on halos) on CPUs.

Pattern matched: a kernel with the ``las.chain`` attribute, ``"conv1:epilogue1:1,..."``: the
(reduction block, epilogue block, number of reduction loops) of each conv, in order, all over
the same patch loop; the last conv's epilogue writes the output.

Schedule strategy:
1. move the chain under the last conv's patch loop (compute_at, last producer first), so one
   patch's intermediates (e.g. conv1 on its halo, span^2 x width) are per-thread scratch
   buffers that stay in L1/L2;
2. mark the patch loop parallel (before step 3: ``parallel()`` rejects decomposed reductions);
3. tile every conv with the same register micro-kernel as every other conv
   (:func:`tile_reduction`), epilogues on the register tiles.
Not done: sharing halo results between neighbouring patches (would need ordering between
threads; the recompute is the price of independent patches).
"""

from __future__ import annotations

from tvm import s_tir

from ..analysis import has_attr
from ..chains import chain_at_patch, parse_chain
from .base import CPURule
from .tiled_conv import get_config, tile_reduction


class PatchChain(CPURule):
    def matches(self, func) -> bool:
        return has_attr(func, "las.chain")

    def schedule(self, sch, func, target, knobs) -> s_tir.Schedule:
        cfg = get_config(target)
        chain = parse_chain(func.attrs["las.chain"])
        get = sch.get_sblock
        patch = chain_at_patch(sch, chain)
        sch.parallel(patch)
        for conv, epilogue, num_reduce in chain:
            tile_reduction(sch, get(conv), get(epilogue), num_reduce, cfg,
                           str(func.attrs["las.kernel"]), parallel=False)
        return sch
