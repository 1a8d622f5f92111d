"""Per-target schedule rules for LAS kernels (dlight style); ``las_compiler.schedules``.

Each target family has one ordered rule list, most specific first: our rules for our kernels
(matched by the ``las.kernel`` name or by structure), then TVM's dlight rules for the legalised
Relax operators around them (pooling, classifier, reshapes), then a generic fallback. Every
rule follows dlight's ``ScheduleRule`` protocol, so ``dl.ApplyDefaultSchedule(*rules_for(t))``
runs them as it runs dlight's own. Rules live one per file under ``cpu/`` (x86 AVX2 / AVX-512
and aarch64 NEON share them; knobs differ by vector width) and ``cuda/`` (sm_61 to sm_90; limits
from the target); a new target family is a folder of rules and an entry in :data:`FAMILIES`.
"""

from __future__ import annotations

import tvm

from .analysis import kernel_kind
from .base import LASRule, ScheduleError, check, new_schedule
from .cpu.elementwise import Elementwise
from .cpu.generic import Generic
from .cpu.masker import MaskerRule
from .cpu.patch_chain import PatchChain
from .cpu.serial_scan import SerialScan
from .cpu.tiled_conv import Config as TiledConvConfig
from .cpu.tiled_conv import TiledConv
from .cuda.elementwise import ElementwiseGPU
from .cuda.patch_chain import PatchChainGPU
from .cuda.scan import ScanGPU
from .cuda.tiled_conv import TiledConvGPU

# family (a target key) -> our rules, most specific first; what each family compiles for
FAMILIES: dict[str, tuple[LASRule, ...]] = {
    "cpu": (TiledConv(), PatchChain(), MaskerRule(), SerialScan(), Elementwise()),
    "cuda": (TiledConvGPU(), PatchChainGPU(), ScanGPU(), ElementwiseGPU()),
}
DESCRIPTIONS = {"cpu": "llvm CPU targets (x86_64 AVX2/AVX-512, aarch64 NEON)",
                "cuda": "NVIDIA GPUs and Jetsons (cuda targets and nvidia/* tags, sm_61 and up)"}


def family(target: tvm.target.Target) -> str | None:
    """The rule family serving ``target`` (by its keys), or None."""
    return next((key for key in FAMILIES if key in target.keys), None)


def check_target(target: tvm.target.Target) -> str:
    """The target's family; a ``ValueError`` naming what is supported if it has none (call
    before any work: a compile for such a target would fail only at scheduling)."""
    name = family(target)
    if name is None:
        supported = "; ".join(DESCRIPTIONS[f] for f in FAMILIES)
        raise ValueError(f"no LAS schedule rules for {target.kind.name} targets (keys "
                         f"{list(target.keys)}) yet; supported: {supported}")
    return name


def _foreign_rules(name: str) -> list:
    from tvm.s_tir import dlight

    if name == "cpu":
        return [dlight.cpu.GEMV(), dlight.cpu.Reduction(), Generic()]
    if name == "cuda":  # what TVM's own CUDA pipeline applies to legalised operators
        return [dlight.gpu.Matmul(), dlight.gpu.GEMV(), dlight.gpu.Reduction(),
                dlight.gpu.GeneralReduction(), dlight.gpu.Fallback()]
    return []


def las_rules(target: tvm.target.Target) -> tuple[LASRule, ...]:
    return FAMILIES[check_target(target)]


def rules_for(target: tvm.target.Target) -> list:
    """Every rule of the target's family in order (ours, dlight's, the fallback)."""
    return [*las_rules(target), *_foreign_rules(check_target(target))]


def rule_for(func: tvm.tirx.PrimFunc, target: tvm.target.Target) -> LASRule | None:
    """The rule that schedules one of our kernels on ``target`` (None for foreign ones)."""
    return next((rule for rule in las_rules(target) if rule.applies(func, target)), None)


def schedule(func: tvm.tirx.PrimFunc, target: tvm.target.Target,
             knobs: dict | None = None) -> tvm.tirx.PrimFunc:
    """``func`` scheduled for ``target``: by the first rule that takes it, with ``knobs``
    (a tuning record's) for one of our kernels. A kernel of ours that no rule takes is an
    error; a foreign function no rule takes is returned as it is."""
    rule = rule_for(func, target)
    if rule is not None:
        sch = rule.apply_knobs(func, target, knobs) if knobs else rule.apply(func, target)
        if sch is not None:
            return sch.mod["main"]
    if kernel_kind(func) is not None:
        raise ValueError(f"no {family(target)} rule matches kernel {kernel_kind(func)!r}")
    with target:
        for rule in _foreign_rules(check_target(target)):
            sch = rule.apply(func, target, False)
            if sch is not None:
                return (sch[0] if isinstance(sch, list) else sch).mod["main"]
    return func


# families whose per-patch chains can exceed a per-block resource (a GPU's shared memory)
BLOCK_LIMITED = ("cuda",)


def pipeline_fits(pipeline, block, target: tvm.target.Target) -> bool:
    """``pipeline`` (a ``block_pipelines.Pipeline``) applies to ``block`` (a
    ``BlockGeometry``) and every kernel of it lies within the target's limits. Only per-patch
    chains can exceed them, on families with per-block limits (their intermediates live in a
    GPU's shared memory), so only those are scheduled here."""
    from ..op.registry import get_kernel

    if not pipeline.applies(block):
        return False
    if family(target) not in BLOCK_LIMITED:
        return True
    for step in pipeline.steps_for(block):
        func = get_kernel(step.kernel)(*step.args(block))
        if func.attrs is None or "las.chain" not in func.attrs:
            continue
        try:
            schedule(func, target)
        except ScheduleError:
            return False
    return True


__all__ = [
    "DESCRIPTIONS",
    "FAMILIES",
    "LASRule",
    "ScheduleError",
    "TiledConv",
    "TiledConvConfig",
    "check",
    "check_target",
    "family",
    "las_rules",
    "new_schedule",
    "pipeline_fits",
    "rule_for",
    "rules_for",
    "schedule",
]
