"""Fallback for small data-parallel kernels (e.g. ``relu_inplace``) on CPUs.

Pattern matched: a LAS kernel with one non-reduction loop nest and no rule of its own.
Schedule strategy: a flat loop is split into parallel chunks of 64 vectorised elements; a
multi-dimensional nest (e.g. a scatter over patches x pixels x channels, whose stores are
indirect) runs its first loop in parallel and vectorises the innermost, contiguous one.
Kernels that are one opaque serial block (``compact``) are left as they are: they run in
microseconds and cannot be split.
"""

from __future__ import annotations

from tvm import s_tir

from ..base import kernel_kind, new_schedule
from .base import CPURule

# scans over at most a few thousand cells or pixels, and a copy used only on a rare path
SERIAL_KERNELS = ("compact", "active_prefix", "active_rows", "copy", "dilated_rows")


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
        if len(loops) == 1:
            outer, inner = sch.split(loops[0], [None, 64])
            sch.parallel(outer)
            sch.vectorize(inner)
        else:
            sch.parallel(loops[0])
            sch.vectorize(loops[-1])
        return sch


def _has_root(sch: s_tir.Schedule) -> bool:
    try:
        sch.get_sblock("root")
    except Exception:  # noqa: BLE001 - TVM raises its own error type for a missing block
        return False
    return True
