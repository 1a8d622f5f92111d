"""Fallback for small data-parallel kernels (e.g. ``relu_inplace``) on CPUs.

Pattern matched: a LAS kernel with one non-reduction loop nest and no rule of its own.
Schedule strategy: split the flat loop into 2 x cores parallel chunks of vector-width runs.
Kernels that are one opaque serial block (``compact``) are left as they are: they run in
microseconds and cannot be split.
"""

from __future__ import annotations

from tvm import s_tir

from ..base import kernel_kind, new_schedule
from .base import CPURule

SERIAL_KERNELS = ("compact",)


class Elementwise(CPURule):
    def apply(self, func, target) -> s_tir.Schedule | None:
        if not self.is_target_available(target) or kernel_kind(func) is None:
            return None
        sch = new_schedule(func)
        if kernel_kind(func) in SERIAL_KERNELS:
            return sch
        blocks = sch.get_child_blocks(sch.get_sblock("root")) if _has_root(sch) else []
        if len(blocks) != 1:
            return None
        loops = sch.get_loops(blocks[0])
        flat = sch.fuse(*loops) if len(loops) > 1 else loops[0]
        outer, inner = sch.split(flat, [None, 64])
        sch.parallel(outer)
        sch.vectorize(inner)
        return sch


def _has_root(sch: s_tir.Schedule) -> bool:
    try:
        sch.get_sblock("root")
    except Exception:  # noqa: BLE001 - TVM raises its own error type for a missing block
        return False
    return True
