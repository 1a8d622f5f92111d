"""Per-target schedule rules for LAS kernels (dlight style), grouped by target family;
``las_compiler.schedules``.

A target family (:class:`~.family.TargetFamily`) is one folder here: ``cpu/`` (x86 AVX2 /
AVX-512 and aarch64 NEON share its rules; knobs differ by vector width) and ``cuda/`` (sm_61 to
sm_90; limits from the target, its toolchain and device-binary packer beside the rules). Each
family has one ordered rule list, most specific first: our rules for our kernels (matched by
the ``las.kernel`` name or by structure), then TVM's dlight rules for the legalised Relax
operators around them (pooling, classifier, reshapes), then a generic fallback. Every rule
follows dlight's ``ScheduleRule`` protocol, so ``dl.ApplyDefaultSchedule(*rules_for(t))`` runs
them as it runs dlight's own. The compiler, the tuner and the CLI ask :func:`family_of`; a new
family is a folder and :func:`register_family` (see ``family.py``).
"""

from __future__ import annotations

import tvm

from .analysis import kernel_kind
from .base import LASRule, ScheduleError, check, new_schedule
from .cpu.family import FAMILY as _CPU
from .cpu.tiled_conv import Config as TiledConvConfig
from .cpu.tiled_conv import TiledConv
from .cuda.family import FAMILY as _CUDA
from .family import TargetFamily

# family name (a target key) -> the family; the built-in ones, then what register_family adds
FAMILIES: dict[str, TargetFamily] = {family.name: family for family in (_CPU, _CUDA)}


def register_family(family: TargetFamily) -> None:
    """Serve targets whose keys name ``family.name`` with ``family`` (replacing a family of
    that name). Its methods are called lazily, when such a target is compiled."""
    if not isinstance(family, TargetFamily) or not family.name:
        raise TypeError(f"{family!r} is not a named TargetFamily")
    FAMILIES[family.name] = family


def unregister_family(name: str) -> None:
    """Undo :func:`register_family` (the built-in families stay)."""
    if name in (_CPU.name, _CUDA.name):
        raise ValueError(f"the built-in family {name!r} cannot be unregistered")
    FAMILIES.pop(name, None)


def family_of(target: tvm.target.Target) -> TargetFamily | None:
    """The family serving ``target``: the first of its keys that names one, or None."""
    return next((FAMILIES[key] for key in target.keys if key in FAMILIES), None)


def family(target: tvm.target.Target) -> str | None:
    """The name of the family serving ``target``, or None."""
    found = family_of(target)
    return found.name if found is not None else None


def check_target(target: tvm.target.Target) -> TargetFamily:
    """The target's family; a ``ValueError`` naming what is supported if it has none (call
    before any work: a compile for such a target would fail only at scheduling)."""
    found = family_of(target)
    if found is None:
        supported = "; ".join(f.description for f in FAMILIES.values())
        raise ValueError(f"no LAS schedule rules for {target.kind.name} targets (keys "
                         f"{list(target.keys)}) yet; supported: {supported}")
    return found


def device_of(target: tvm.target.Target):
    """The TVM runtime device (device 0) code for ``target`` runs on: its family's
    (artifacts record it; ``deploy.artifact.runtime_device`` reads it back)."""
    return tvm.device(check_target(target).runtime_device, 0)


def las_rules(target: tvm.target.Target) -> tuple[LASRule, ...]:
    return check_target(target).rules()


def rules_for(target: tvm.target.Target) -> list:
    """Every rule of the target's family in order (ours, dlight's, the fallback)."""
    found = check_target(target)
    return [*found.rules(), *found.foreign_rules()]


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
        for rule in check_target(target).foreign_rules():
            sch = rule.apply(func, target, False)
            if sch is not None:
                return (sch[0] if isinstance(sch, list) else sch).mod["main"]
    return func


def pipeline_fits(pipeline, block, target: tvm.target.Target) -> bool:
    """``pipeline`` (a ``block_pipelines.Pipeline``) applies to ``block`` (a
    ``BlockGeometry``) and every kernel of it lies within the target's limits. Only per-patch
    chains can exceed them, on families with per-block limits (their intermediates live in a
    GPU's shared memory), so only those are scheduled here."""
    from ..op.registry import get_kernel

    if not pipeline.applies(block):
        return False
    if not check_target(target).block_limited:
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
    "FAMILIES",
    "LASRule",
    "ScheduleError",
    "TargetFamily",
    "TiledConv",
    "TiledConvConfig",
    "check",
    "check_target",
    "device_of",
    "family",
    "family_of",
    "las_rules",
    "new_schedule",
    "pipeline_fits",
    "register_family",
    "rule_for",
    "rules_for",
    "schedule",
    "unregister_family",
]
