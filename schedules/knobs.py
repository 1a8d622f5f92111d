"""Knobs of our schedule rules, as data, and as draws in a meta_schedule trace.

A rule's knobs (a register tile's pixel count, a loop order) are a :class:`KnobSpace`. With
``tunable=True`` a rule draws each knob with ``sample_categorical`` and annotates the kernel's
main block with ``las.knob.<name>`` = the draw, so stock meta_schedule search, mutators, cost
models and databases work on our rules unchanged, and a tuning record's trace *names* its knob
values: :func:`knobs_from_trace` reads them back, for any rule. A structural knob (one that
changes the loop structure, which a decision cannot switch) is drawn from a single candidate in
one traced schedule per value.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

from tvm import s_tir

ANNOTATION = "las.knob."


@dataclass(frozen=True)
class Knob:
    """One knob: its name, the values it may take (ints or bools), and whether it is
    structural (see the module docstring)."""

    name: str
    values: tuple
    structural: bool = False


@dataclass(frozen=True)
class KnobSpace:
    knobs: tuple[Knob, ...]

    @property
    def size(self) -> int:
        size = 1
        for knob in self.knobs:
            size *= len(knob.values)
        return size

    def structural_choices(self) -> list[dict]:
        """Every combination of the structural knobs' values."""
        fixed = [k for k in self.knobs if k.structural]
        return [dict(zip([k.name for k in fixed], combo, strict=True))
                for combo in itertools.product(*(k.values for k in fixed))]

    def __getitem__(self, name: str) -> Knob:
        return next(k for k in self.knobs if k.name == name)


def draw(sch: s_tir.Schedule, block, knob: Knob, fixed=None):
    """A ``sample_categorical`` draw of ``knob`` (of the single value ``fixed`` for a
    structural knob), recorded on ``block`` as ``las.knob.<name>``; returns the ExprRV."""
    values = [fixed] if fixed is not None else list(knob.values)
    rv = sch.sample_categorical(candidates=[int(v) for v in values],
                                probs=[1.0 / len(values)] * len(values))
    sch.annotate(block, ANNOTATION + knob.name, rv)
    return rv


# The first design spaces (tuning logs written before the knobs had names) drew the loop order
# and then the pixel tile, and annotated the draw of the loop order as this:
_LEGACY_ORDER = "las.channel_outer"


def knobs_from_trace(trace: s_tir.schedule.Trace) -> dict[str, int]:
    """``{knob name: value}`` of a trace made with :func:`draw` (ints; bools as 0/1). Traces
    of the first, unnamed design space (``channel_outer`` then ``pixels``) read the same."""
    drawn, order = {}, []
    for inst in trace.insts:
        if inst.kind.name == "SampleCategorical":
            candidates = [int(c) for c in inst.attrs[0]]
            drawn[inst.outputs[0]] = candidates[int(trace.get_decision(inst))]
            order.append(drawn[inst.outputs[0]])
    knobs, legacy = {}, False
    for inst in trace.insts:
        if inst.kind.name == "Annotate" and str(inst.attrs[0]).startswith(ANNOTATION):
            value = inst.inputs[1]
            if value in drawn:
                knobs[str(inst.attrs[0])[len(ANNOTATION):]] = drawn[value]
        legacy |= inst.kind.name == "Annotate" and str(inst.attrs[0]) == _LEGACY_ORDER
    if not knobs and legacy and len(order) == 2:
        return {"channel_outer": order[0], "pixels": order[1]}
    if not knobs:
        raise ValueError("not a las-compiler design-space trace (no las.knob.* draws)")
    return knobs
