"""Insert kernel PrimFuncs into a module being rewritten, once per (generator, arguments).

A network repeats layer shapes (ResNet-50's stage 3 has five identical blocks), so lowering
passes ask for the same kernel many times; the table returns the existing GlobalVar and the
module holds one copy.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import tvm
from tvm import relax

OPAQUE_PATTERN = 8  # relax OpPatternKind::kOpaque


class KernelTable:
    """Kernels added through one ``BlockBuilder``."""

    def __init__(self, builder: relax.BlockBuilder):
        self._builder = builder
        self._vars: dict[tuple, relax.GlobalVar] = {}
        self._count: dict[str, int] = {}

    def get(self, generator: Callable, *args) -> relax.GlobalVar:
        key = (generator, args)
        if key not in self._vars:
            func = generator(*args)
            kind = str(func.attrs["las.kernel"]) if func.attrs and "las.kernel" in func.attrs \
                else generator.__name__
            # opaque to FuseOps: a kernel is already the fusion we want, and in-place kernels
            # (same buffer as input and output) must not be merged with their neighbours
            func = func.with_attr("op_pattern", OPAQUE_PATTERN).without_attr("global_symbol")
            # "<kind>_<i>": names such as conv1x1 end in digits, so a bare counter would read
            # as another kernel (conv1x15)
            taken = {gv.name_hint for gv in self._builder.get().get_global_vars()}
            index = self._count.get(kind, 0)
            while f"{kind}_{index}" in taken:
                index += 1
            self._count[kind] = index + 1
            self._vars[key] = self._builder.add_func(func, f"{kind}_{index}")
        return self._vars[key]


def constant(array: np.ndarray) -> tvm.ir.expr.Constant:
    return relax.const(np.ascontiguousarray(array, dtype=np.float32))


def numpy_of(expr: relax.Expr, what: str) -> np.ndarray:
    """The value of a constant argument (weights must be known at compile time)."""
    if not isinstance(expr, tvm.ir.expr.Constant):
        raise ValueError(f"{what} must be a compile-time constant (model weights), "
                         f"got {type(expr).__name__}")
    return expr.value.numpy()


def fold_bn_arrays(weight, gamma, beta, mean, var, eps: float):
    """Eval-mode BN folded into the preceding conv: (weight OIHW, bias), float32."""
    scale = gamma / np.sqrt(var + eps)
    return ((weight * scale[:, None, None, None]).astype(np.float32),
            (beta - mean * scale).astype(np.float32))
