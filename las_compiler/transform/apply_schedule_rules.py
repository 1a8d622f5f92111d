"""ApplyScheduleRules: schedule every PrimFunc of the module for the target.

Our kernels get the per-target rules of ``las_compiler.schedules``, with the knobs of a
tuning log's best record where the log has one (``las_compiler.tuning``); the legalised
remainder (pooling, classifier, reshapes) gets dlight's CPU rules or our generic fallback. A
function is scheduled once and marked ``tirx.is_scheduled``. The log's ``tuned`` /
``untuned`` lists name the tunable kernels that found a record and those that fell back to the
rules' defaults.
"""

from __future__ import annotations

import tvm

from ..schedules import schedule_function
from ..schedules.base import new_schedule


@tvm.transform.module_pass(opt_level=0, name="ApplyScheduleRules")
class ApplyScheduleRules:
    def __init__(self, target: tvm.target.Target, tuning_log=None):
        self.target = target
        self.tuning_log = tuning_log

    def _schedule(self, name: str, func):
        if self.tuning_log is not None:
            from ..tuning.knobs import knob_space, schedule_with_knobs

            if knob_space(func, self.target) is not None:
                knobs = self.tuning_log.best_knobs(func)
                if knobs is None:
                    self.tuning_log.untuned.append(name)
                else:
                    self.tuning_log.tuned.append(name)
                    sch = new_schedule(func)
                    schedule_with_knobs(sch, func, self.target, knobs.pixels,
                                        knobs.channel_outer)
                    return sch.mod["main"]
        return schedule_function(func, self.target)

    def transform_module(self, mod: tvm.IRModule, _ctx) -> tvm.IRModule:
        updates = {}
        for gvar, func in mod.functions_items():
            if isinstance(func, tvm.tirx.PrimFunc) and not (
                    func.attrs is not None and "tirx.is_scheduled" in func.attrs):
                scheduled = self._schedule(gvar.name_hint, func)
                updates[gvar] = scheduled.with_attr("tirx.is_scheduled", True)
        for gvar, func in updates.items():
            mod[gvar] = func
        return mod
