"""Masker kernel on CPUs: pooling + 2-logit 1x1 conv + compare.

Pattern matched: ``las.kernel == "masker"``.

Schedule strategy: 1. one task per patch cell (parallel); 2. pooling and logits computed at
the cell, so a cell's pooled vector never leaves L1; 3. the pooling window is walked row by
row with the channel loop innermost and vectorised (contiguous NHWC reads).
Not done: fusing the masker into conv1 (a later kernel); it reads the input once per cell and
costs ~C*H*W adds, under 1 % of a block.
"""

from __future__ import annotations

from tvm import s_tir

from ..base import kernel_kind, new_schedule
from .base import CPURule


class MaskerRule(CPURule):
    def apply(self, func, target) -> s_tir.Schedule | None:
        if not self.is_target_available(target) or kernel_kind(func) != "masker":
            return None
        sch = new_schedule(func)
        pool, logits, compare = (sch.get_sblock(n) for n in ("pool", "logits", "compare"))
        cell = sch.get_loops(compare)[0]
        sch.compute_at(logits, cell)
        sch.compute_at(pool, cell)
        inner = sch.get_loops(pool)[1:]  # (c, a, b); unit window loops vanish when S*stride = 1
        if len(inner) == 3:
            sch.reorder(inner[1], inner[2], inner[0])
        sch.vectorize(inner[0])
        sch.parallel(cell)
        return sch
