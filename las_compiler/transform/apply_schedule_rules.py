"""ApplyScheduleRules: schedule every PrimFunc of the module for the target.

Our kernels get the per-target rules of ``las_compiler.schedules``; the legalised remainder
(pooling, classifier, reshapes) gets dlight's CPU rules or our generic fallback. A function is
scheduled once and marked ``tirx.is_scheduled``.
"""

from __future__ import annotations

import tvm

from ..schedules import schedule_function


@tvm.transform.module_pass(opt_level=0, name="ApplyScheduleRules")
class ApplyScheduleRules:
    def __init__(self, target: tvm.target.Target):
        self.target = target

    def transform_module(self, mod: tvm.IRModule, _ctx) -> tvm.IRModule:
        updates = {}
        for gvar, func in mod.functions_items():
            if isinstance(func, tvm.tirx.PrimFunc) and not (
                    func.attrs is not None and "tirx.is_scheduled" in func.attrs):
                scheduled = schedule_function(func, self.target)
                updates[gvar] = scheduled.with_attr("tirx.is_scheduled", True)
        for gvar, func in updates.items():
            mod[gvar] = func
        return mod
