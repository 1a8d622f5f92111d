"""Insert kernel PrimFuncs into a module being rewritten, once per (kernel, arguments).

A network repeats layer shapes (ResNet-50's stage 3 has five identical blocks), so lowering
passes ask for the same kernel many times; the table returns the existing GlobalVar and the
module holds one copy. Kernels are asked for by their registered name (``las_compiler.op``).
"""

from __future__ import annotations

import numpy as np
import tvm
from tvm import relax

from ..op.registry import get_kernel

OPAQUE_PATTERN = 8  # relax OpPatternKind::kOpaque


class KernelTable:
    """Kernels added through one ``BlockBuilder``."""

    def __init__(self, builder: relax.BlockBuilder):
        self._builder = builder
        self._vars: dict[tuple, tuple[relax.GlobalVar, tvm.tirx.PrimFunc]] = {}
        self._count: dict[str, int] = {}

    def get(self, kernel: str, *args) -> tuple[relax.GlobalVar, tvm.tirx.PrimFunc]:
        """(GlobalVar, PrimFunc) of ``kernel(*args)``, added on first use."""
        key = (kernel, args)
        if key not in self._vars:
            # opaque to FuseOps: a kernel is already the fusion we want, and in-place kernels
            # (same buffer as input and output) must not be merged with their neighbours
            func = get_kernel(kernel)(*args).with_attr("op_pattern", OPAQUE_PATTERN) \
                .without_attr("global_symbol")
            # "<kernel>_<i>": names such as conv1x1 end in digits, so a bare counter would read
            # as another kernel (conv1x15)
            taken = {gv.name_hint for gv in self._builder.get().get_global_vars()}
            index = self._count.get(kernel, 0)
            while f"{kernel}_{index}" in taken:
                index += 1
            self._count[kernel] = index + 1
            self._vars[key] = (self._builder.add_func(func, f"{kernel}_{index}"), func)
        return self._vars[key]


def constant(array: np.ndarray) -> tvm.ir.expr.Constant:
    return relax.const(np.ascontiguousarray(array, dtype=np.float32))
