"""The toy family: :class:`CPUFamily` under another name, its rules wrapped to record the
kernels they schedule, its predictor profile read from this folder."""

from __future__ import annotations

from pathlib import Path

from las_compiler.predictor.hardware import load_hardware
from las_compiler.schedules.analysis import kernel_kind
from las_compiler.schedules.cpu.family import CPUFamily

PROFILE = Path(__file__).with_name("profile.json")


def _recording(rule, scheduled: list[str]):
    """``rule`` as an instance of a subclass that logs each kernel kind it schedules."""
    base = type(rule)

    def schedule(self, sch, func, target, knobs):
        scheduled.append(kernel_kind(func))
        return base.schedule(self, sch, func, target, knobs)

    return type(f"Toy{base.__name__}", (base,), {"schedule": schedule})()


class ToyFamily(CPUFamily):
    name = "toy"
    description = "this CPU under another name (the target-family recipe's test)"

    def __init__(self):
        self.scheduled: list[str] = []  # kernel kinds our rules scheduled
        self.priced: list[str] = []  # targets the predictor priced blocks for
        self._rules = tuple(_recording(rule, self.scheduled) for rule in super().rules())

    def rules(self) -> tuple:
        return self._rules

    def hardware(self, target):
        self.priced.append(str(target))
        return load_hardware(PROFILE)
