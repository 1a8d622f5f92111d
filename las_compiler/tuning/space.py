"""The design space of one kernel, as the rule that owns the kernel defines it.

The hand rules are already fast; tuning searches the few knobs each rule exposes
(``LASRule.knob_space``: a register tile's pixel count, a loop order). A design space is the
rule's own tunable schedules (``LASRule.design_space``: one traced schedule per structural
choice, other knobs drawn by ``sample_categorical``), so meta_schedule's search, mutators, cost
models and databases work on it unchanged, and a record's trace names its knob values
(``schedules.knobs.knobs_from_trace``). Applying a record re-runs the rule with those values
instead of replaying the trace, which also works for the symbolic-n kernel the trace was not
tuned on (the tune-then-replay route, at the level of knobs).
"""

from __future__ import annotations

import tvm
from tvm import s_tir

from ..schedules import rule_for
from ..schedules.analysis import kernel_kind
from ..schedules.knobs import KnobSpace


def knob_space(func: tvm.tirx.PrimFunc, target: tvm.target.Target) -> KnobSpace | None:
    """The knobs of ``func``'s rule on ``target``; None for kernels without knobs."""
    rule = rule_for(func, target)
    return rule.knob_space(func, target) if rule is not None else None


def design_space(target: tvm.target.Target):
    """A ``ScheduleFn`` body: the rule's design space for the task's kernel."""

    def sch_fn(sch: s_tir.Schedule) -> list[s_tir.Schedule]:
        func = sch.mod["main"]
        rule = rule_for(func, target)
        if rule is None or rule.knob_space(func, target) is None:
            raise ValueError(f"{kernel_kind(func)} has no tunable knobs")
        return rule.design_space(sch, target)

    return sch_fn


def schedule_with_knobs(func: tvm.tirx.PrimFunc, target: tvm.target.Target,
                        knobs: dict) -> tvm.tirx.PrimFunc:
    """``func`` scheduled by its rule with these knob values."""
    rule = rule_for(func, target)
    if rule is None:
        raise ValueError(f"no rule schedules {kernel_kind(func)} on {target.kind.name}")
    return rule.apply_knobs(func, target, knobs).mod["main"]
