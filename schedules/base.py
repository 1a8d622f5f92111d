"""Rule protocol and dispatch (the shape of TVM's dlight).

A rule's ``apply(func, target)`` returns a scheduled ``s_tir.Schedule`` or None ("not my
kernel"); it never raises for kernels it does not handle. Illegal schedules raise
:class:`ScheduleError` through :func:`check`, so search loops can catch one exception type.
"""

from __future__ import annotations

import tvm
from tvm import s_tir


class ScheduleError(ValueError):
    """A rule cannot legally schedule a kernel with the given knobs."""


def check(condition: bool, message: str) -> None:
    """Raise :class:`ScheduleError` with a message carrying the numbers when ``condition`` fails."""
    if not condition:
        raise ScheduleError(message)


class ScheduleRule:
    """A schedule for one kernel pattern on one target family."""

    def is_target_available(self, target: tvm.target.Target) -> bool:
        raise NotImplementedError

    def apply(self, func: tvm.tirx.PrimFunc, target: tvm.target.Target) -> s_tir.Schedule | None:
        raise NotImplementedError


def kernel_kind(func: tvm.tirx.PrimFunc) -> str | None:
    """The ``las.kernel`` attribute our kernel generators set (None for foreign functions)."""
    attrs = func.attrs
    return str(attrs["las.kernel"]) if attrs is not None and "las.kernel" in attrs else None


def new_schedule(func: tvm.tirx.PrimFunc) -> s_tir.Schedule:
    return s_tir.Schedule(tvm.IRModule({"main": func}))
