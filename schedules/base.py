"""Rule protocol: TVM dlight's ``ScheduleRule``, plus the knobs of our rules.

A rule's ``apply(func, target, tunable)`` returns None ("not my kernel"; it never raises for
kernels it does not handle), a scheduled ``s_tir.Schedule``, or with ``tunable=True`` a list
of schedules whose knobs are ``sample_categorical`` draws (a meta_schedule design space). So
our rules run under ``dl.ApplyDefaultSchedule`` like dlight's own. Illegal schedules raise
:class:`ScheduleError` through :func:`check`, so search loops can catch one exception type.

:class:`LASRule` adds what our kernels' rules share: a rule owns its knob space
(:meth:`LASRule.knob_space`) and schedules with given knob values (:meth:`LASRule.schedule`),
which is how tuning logs and the tuner reach a rule's knobs without reaching into it.
Per-target families subclass it only to decide availability from ``target.keys``.
"""

from __future__ import annotations

import tvm
from tvm import s_tir
from tvm.s_tir.dlight import ScheduleRule


class ScheduleError(ValueError):
    """A rule cannot legally schedule a kernel with the given knobs."""


def check(condition: bool, message: str) -> None:
    """Raise :class:`ScheduleError` with a message carrying the numbers when ``condition`` fails."""
    if not condition:
        raise ScheduleError(message)


def new_schedule(func: tvm.tirx.PrimFunc) -> s_tir.Schedule:
    return s_tir.Schedule(tvm.IRModule({"main": func}))


class LASRule(ScheduleRule):
    """A rule for our kernels (see the module docstring). Subclasses implement
    :meth:`matches` and :meth:`schedule`, and :meth:`knob_space` if they have knobs."""

    def is_target_available(self, target: tvm.target.Target) -> bool:
        raise NotImplementedError

    def matches(self, func: tvm.tirx.PrimFunc) -> bool:
        raise NotImplementedError

    def knob_space(self, func: tvm.tirx.PrimFunc, target: tvm.target.Target):
        """The rule's :class:`~las_compiler.schedules.knobs.KnobSpace` for ``func``, or None
        (no knobs)."""
        return None

    def default_knobs(self, func: tvm.tirx.PrimFunc, target: tvm.target.Target) -> dict:
        return {}

    def schedule(self, sch: s_tir.Schedule, func: tvm.tirx.PrimFunc,
                 target: tvm.target.Target, knobs: dict) -> s_tir.Schedule:
        """Schedule ``sch`` (a fresh or a traced schedule of ``func``) with these knob values
        (ints, or ExprRVs drawn while tuning)."""
        raise NotImplementedError

    def applies(self, func, target) -> bool:
        return isinstance(func, tvm.tirx.PrimFunc) and self.is_target_available(target) \
            and self.matches(func)

    def apply(self, func, target, tunable: bool = False):
        if not self.applies(func, target):
            return None
        if tunable and self.knob_space(func, target) is not None:
            return self.design_space(new_schedule(func), target)
        knobs = self.default_knobs(func, target)
        return self.schedule(new_schedule(func), func, target, knobs)

    def apply_knobs(self, func, target, knobs: dict) -> s_tir.Schedule:
        """The schedule with these knob values (a tuning record's)."""
        return self.schedule(new_schedule(func), func, target,
                             {**self.default_knobs(func, target), **knobs})

    def design_space(self, sch: s_tir.Schedule, target) -> list[s_tir.Schedule]:
        """One traced schedule per structural choice, the other knobs drawn (the body of a
        meta_schedule ``ScheduleFn``)."""
        from .knobs import draw

        func = sch.mod["main"]
        space = self.knob_space(func, target)
        out = []
        for fixed in space.structural_choices():
            branch = sch.copy()
            anchor = self.anchor_block(branch, func)
            knobs = {knob.name: draw(branch, anchor, knob, fixed.get(knob.name))
                     for knob in space.knobs}
            knobs.update(fixed)  # structural knobs as plain values
            out.append(self.schedule(branch, func, target, knobs))
        return out

    def anchor_block(self, sch: s_tir.Schedule, func):
        """The block the knob draws are recorded on (must survive scheduling)."""
        raise NotImplementedError
