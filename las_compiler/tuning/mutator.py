"""A mutator for knob draws: re-draws one ``sample_categorical`` decision of a design-space
trace. Stock mutators change tile sizes, unroll depths or compute locations of meta_schedule's
own rules; our design spaces have none of those, so evolutionary search needs this one."""

from __future__ import annotations

import random

from tvm.ir.utils import derived_object
from tvm.s_tir import meta_schedule as ms


@derived_object
class MutateKnob(ms.mutator.PyMutator):
    def __init__(self, seed: int = 0):
        super().__init__()
        self.rng = random.Random(seed)

    def _initialize_with_tune_context(self, context) -> None:
        pass

    def apply(self, trace, _rand_state=None):
        draws = [inst for inst in trace.insts if inst.kind.name == "SampleCategorical"
                 and len(inst.attrs[0]) > 1]
        if not draws:
            return None
        inst = self.rng.choice(draws)
        current = int(trace.get_decision(inst))
        choices = [i for i in range(len(inst.attrs[0])) if i != current]
        return trace.with_decision(inst, self.rng.choice(choices), remove_postproc=True)

    def clone(self):
        return MutateKnob(self.rng.randrange(1 << 30))
