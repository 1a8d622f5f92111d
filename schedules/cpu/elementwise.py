"""Element-wise LAS kernels on CPUs (``relu_inplace``, ``add_relu``, gathers, scatters,
``copy_inactive``, ``masker_flags``).

Pattern matched: a LAS kernel with no reduction block of its own (no ``las.reduce_block`` or
``las.chain``), one loop nest, and no other rule.
Schedule strategy: a flat loop is split into parallel chunks of 64 vectorised elements; a
multi-dimensional nest (e.g. a scatter over patches x pixels x channels, whose stores are
indirect) runs its first loop in parallel and vectorises the innermost, contiguous one (in chunks:
``analysis.vectorize_chunked``).
Deliberately not done: tiling (these kernels move data once).
"""

from __future__ import annotations

from ..analysis import has_attr, kernel_kind, root_blocks, vectorize_chunked
from .base import CPURule


class Elementwise(CPURule):
    def matches(self, func) -> bool:
        return kernel_kind(func) is not None and not has_attr(func, "las.reduce_block") \
            and not has_attr(func, "las.chain") and kernel_kind(func) != "masker"

    def schedule(self, sch, func, target, knobs):
        blocks = root_blocks(sch)
        if len(blocks) != 1:
            return None
        loops = sch.get_loops(blocks[0])
        if len(loops) == 1:
            outer, inner = sch.split(loops[0], [None, 64])
            sch.parallel(outer)
            sch.vectorize(inner)
        else:
            sch.parallel(loops[0])
            vectorize_chunked(sch, loops[-1])
        return sch
