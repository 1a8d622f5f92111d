"""Tuning tasks: every kernel of a compiled model whose rule has knobs, at static shapes.

The model is lowered exactly as ``las_compiler.compile`` lowers it, up to scheduling; each
distinct kernel becomes a task (weighted by how often the network calls it). A kernel with
a symbolic patch count (meta_schedule cannot tune those) is specialised to a representative
count: the activation rate times the largest count the kernel's shapes allow (cells of its
feature map for per-patch kernels, row groups of 12 for row kernels). Its knobs are applied
to the symbolic kernel at compile time (:mod:`.database`).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import tvm
import tvm_ffi

from ..op.sparse_rows import ROW_GROUP, ROW_KERNELS
from ..schedules.analysis import kernel_kind
from .database import _symbolic_params, normalize, specialize_counts
from .space import knob_space


@dataclass
class Task:
    name: str
    kind: str
    mod: tvm.IRModule  # the static workload (normalised)
    weight: int  # call sites in the network
    symbolic: bool


def _static_shapes(func) -> list[tuple[int, ...]]:
    return [tuple(int(d) for d in p.shape) for p in func.params
            if getattr(p, "shape", None) is not None and all(isinstance(d, tvm.tirx.IntImm)
                                                             for d in p.shape)]


def representative_shapes(func: tvm.tirx.PrimFunc, rate: float) -> list[tuple[int, ...]]:
    """Static shapes for ``func``'s symbolic parameters at activation rate ``rate``."""
    maps = [s for s in _static_shapes(func) if len(s) == 4]
    pixels = max((s[0] * s[1] * s[2] for s in maps), default=0)
    shapes = []
    for index in _symbolic_params(func):
        dims = func.params[index].shape
        if kernel_kind(func) in ROW_KERNELS:
            bound = math.ceil(pixels / ROW_GROUP)
        else:  # per-patch: dims (n, S*S, C) or (n,); patch pixels from the patch buffers
            per_patch = next((int(p.shape[1]) for p in func.params
                              if getattr(p, "shape", None) is not None and len(p.shape) == 3
                              and isinstance(p.shape[1], tvm.tirx.IntImm)), 1)
            bound = max(1, pixels // per_patch)
        count = max(2, round(rate * bound))
        shapes.append(tuple(count if not isinstance(d, tvm.tirx.IntImm) else int(d)
                            for d in dims))
    return shapes


def lowered_module(model, example_input, target, pipelines="auto",
                   expected_rate: float = 0.5) -> tvm.IRModule:
    """The model's Relax module with every kernel lowered (the compiler's own frontend and
    phases 1-4), before scheduling."""
    from ..frontend import import_torch
    from ..phases import lowering_passes

    mod = import_torch(model, example_input, (), pipelines)
    with tvm.transform.PassContext(opt_level=3):
        return lowering_passes(target, expected_rate)(mod)


def extract_tasks(mod: tvm.IRModule, target, rate: float) -> list[Task]:
    """Distinct tunable kernels of a lowered module, in first-call order."""
    calls = "\n".join(f.script() for _, f in mod.functions_items()
                      if isinstance(f, tvm.relax.Function))
    tasks: dict[int, Task] = {}
    for gvar, func in mod.functions_items():
        if not isinstance(func, tvm.tirx.PrimFunc) or knob_space(func, target) is None:
            continue
        symbolic = bool(_symbolic_params(func))
        static = specialize_counts(func, representative_shapes(func, rate)) if symbolic \
            else func
        workload = normalize(static)
        key = tvm_ffi.structural_hash(workload)
        count = max(1, len(re.findall(rf"call_tir(?:_inplace)?\({re.escape(gvar.name_hint)},",
                                      calls)))
        if key in tasks:
            tasks[key].weight += count
        else:
            tasks[key] = Task(gvar.name_hint, kernel_kind(func), workload, count, symbolic)
    return list(tasks.values())
