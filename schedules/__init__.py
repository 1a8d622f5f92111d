"""Per-target schedule rules for LAS kernels (dlight style); ``las_compiler.schedules``.

``schedule_kernel(func, target)`` tries the target family's rules in order (most specific
first) and returns the scheduled PrimFunc. Rules live one per file under ``cpu/`` (x86 AVX2 /
AVX-512 and aarch64 NEON share them; knobs differ by vector width); CUDA rules come with the
GPU issue.
"""

from __future__ import annotations

import tvm

from .base import ScheduleError, ScheduleRule, check, kernel_kind
from .cpu.elementwise import Elementwise
from .cpu.generic import Generic
from .cpu.masker import MaskerRule
from .cpu.patch_chain import PatchChain
from .cpu.tiled_conv import Config as TiledConvConfig
from .cpu.tiled_conv import TiledConv

RULES: dict[str, list[ScheduleRule]] = {
    "cpu": [TiledConv(), PatchChain(), MaskerRule(), Elementwise()],
}


def schedule_kernel(func: tvm.tirx.PrimFunc, target: tvm.target.Target) -> tvm.tirx.PrimFunc:
    """Schedule one LAS kernel for ``target`` with the first rule that matches."""
    family = next((key for key in RULES if key in target.keys), None)
    if family is None:
        raise ValueError(
            f"no LAS schedule rules for target {target.kind.name} with keys {list(target.keys)}; "
            f"supported: {sorted(RULES)}"
        )
    for rule in RULES[family]:
        sch = rule.apply(func, target)
        if sch is not None:
            return sch.mod["main"]
    raise ValueError(f"no {family} rule matches kernel {kernel_kind(func)!r}")


# Rules for legalised Relax operators (no ``las.kernel``): TVM's dlight first, ours last.
def _foreign_rules(family: str) -> list:
    from tvm.s_tir import dlight

    if family == "cpu":
        return [dlight.cpu.GEMV(), dlight.cpu.Reduction(), Generic()]
    return []


def schedule_function(func: tvm.tirx.PrimFunc, target: tvm.target.Target) -> tvm.tirx.PrimFunc:
    """Schedule any PrimFunc of a compiled network: our kernels by :func:`schedule_kernel`,
    legalised Relax operators by dlight's rules with :class:`Generic` as the fallback."""
    if kernel_kind(func) is not None:
        return schedule_kernel(func, target)
    if func.attrs is not None and "tirx.is_scheduled" in func.attrs:
        return func
    family = next((key for key in RULES if key in target.keys), None)
    for rule in _foreign_rules(family):
        with target:
            sch = rule.apply(func, target, False)
        if sch is None:
            continue
        if isinstance(sch, list):
            sch = sch[0]
        return sch.mod["main"].with_attr("tirx.is_scheduled", True)
    return func


__all__ = [
    "RULES",
    "ScheduleError",
    "ScheduleRule",
    "TiledConv",
    "TiledConvConfig",
    "check",
    "schedule_function",
    "schedule_kernel",
]
