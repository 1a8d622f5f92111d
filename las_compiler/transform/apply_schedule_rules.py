"""ApplyScheduleRules: schedule every PrimFunc of the module for the target.

1. Our tunable kernels with a record in the tuning log: the rule that owns the kernel
   schedules it with the record's knobs (``TuningLog.best_knobs``).
2. Everything else: the target family's rule list (``las_compiler.schedules.rules_for``: our
   rules, dlight's, a generic fallback) through TVM's own ``dl.ApplyDefaultSchedule``.
3. A kernel of ours that no rule took is an error naming it.

The log's ``tuned`` / ``untuned`` lists name the tunable kernels that found a record and those
that fell back to the rules' defaults.
"""

from __future__ import annotations

import tvm
from tvm.s_tir import dlight

from ..schedules import rule_for, rules_for, schedule
from ..schedules.analysis import kernel_kind

SCHEDULED = "tirx.is_scheduled"


def _scheduled(func) -> bool:
    return func.attrs is not None and SCHEDULED in func.attrs


def _offered(space, knobs: dict) -> bool:
    """Every knob value is one the rule offers today (a record made by an older rule may
    hold a tile that no longer fits, e.g. 16 pixels over 12-pixel row groups)."""
    values = {knob.name: {int(v) for v in knob.values} for knob in space.knobs}
    return set(knobs) <= set(values) and all(int(v) in values[k] for k, v in knobs.items())


@tvm.transform.module_pass(opt_level=0, name="ApplyScheduleRules")
class ApplyScheduleRules:
    def __init__(self, target: tvm.target.Target, tuning_log=None):
        self.target = target
        self.tuning_log = tuning_log

    def _tuned(self, mod: tvm.IRModule) -> tvm.IRModule:
        for gvar, func in list(mod.functions_items()):
            if not isinstance(func, tvm.tirx.PrimFunc) or _scheduled(func):
                continue
            rule = rule_for(func, self.target)
            space = rule.knob_space(func, self.target) if rule is not None else None
            if space is None:
                continue
            knobs = self.tuning_log.best_knobs(func)
            if knobs is not None and not _offered(space, knobs):
                self.tuning_log.notes.append(f"{gvar.name_hint}: the record's knobs {knobs} are "
                                             "not in its rule's space any more (ignored)")
                knobs = None
            (self.tuning_log.untuned if knobs is None else self.tuning_log.tuned).append(
                gvar.name_hint)
            if knobs is not None:
                mod[gvar] = schedule(func, self.target, knobs).with_attr(SCHEDULED, True)
        return mod

    def transform_module(self, mod: tvm.IRModule, _ctx) -> tvm.IRModule:
        if self.tuning_log is not None:
            mod = self._tuned(mod)
        with self.target:
            mod = dlight.ApplyDefaultSchedule(*rules_for(self.target))(mod)
        missed = [gvar.name_hint for gvar, func in mod.functions_items()
                  if isinstance(func, tvm.tirx.PrimFunc) and kernel_kind(func) is not None
                  and not _scheduled(func)]
        if missed:
            raise ValueError(f"no schedule rule for {self.target.kind.name} took the kernels "
                             f"{missed}")
        return mod
