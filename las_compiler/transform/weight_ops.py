"""Weight preparation as Relax ops, for modules that take their weights as inputs.

A frontend may import a network with its weights as function parameters (``main``'s
``num_input`` attribute: the parameters after the first ``num_input`` are weights) instead of
constants. The lowering passes then cannot fold BN and pack weights in numpy at compile time;
they run the same preparation (:mod:`las_compiler.op.params`, written once over an array
namespace) through :class:`RelaxArrays`, which emits it as Relax ops on the weight inputs.
``relax.transform.LiftTransformParams`` then moves those ops into ``main_transform_params``:
the artifact carries code only, and its user runs ``main_transform_params`` once on the
weights (a PyTorch ``state_dict``) before calling ``main``.
"""

from __future__ import annotations

import numpy as np
import tvm
from tvm import relax

from ..op.params import NUMPY
from .kernel_table import constant


class RelaxArrays:
    """The array operations of :mod:`las_compiler.op.params`, emitted into ``builder``."""

    def __init__(self, builder: relax.BlockBuilder):
        self.builder = builder

    def _emit(self, expr):
        return self.builder.emit(expr)

    @staticmethod
    def shape(a) -> tuple[int, ...]:
        return tuple(int(d) for d in a.ty.shape)

    def reshape(self, a, shape):
        return self._emit(relax.op.reshape(a, tuple(shape)))

    def transpose(self, a, axes):
        return self._emit(relax.op.permute_dims(a, list(axes)))

    def concat(self, arrays, axis: int = 0):
        return self._emit(relax.op.concat(list(arrays), axis=axis))

    @staticmethod
    def zeros(shape):
        return relax.const(np.zeros(shape, np.float32))

    def broadcast(self, a, shape):
        return self._emit(relax.op.broadcast_to(a, tuple(shape)))

    def scale_shift(self, weight, gamma, beta, mean, var, eps: float):
        out_c = self.shape(weight)[0]
        eps_value = relax.const(np.float32(eps))
        scale = self._emit(relax.op.divide(gamma, relax.op.sqrt(relax.op.add(var, eps_value))))
        folded = self._emit(relax.op.multiply(weight, relax.op.reshape(scale, (out_c, 1, 1, 1))))
        shift = self._emit(relax.op.subtract(beta, relax.op.multiply(mean, scale)))
        return folded, shift


def weight_params(func: relax.Function) -> set[relax.Var]:
    """The parameters of ``func`` that are weights (after its ``num_input`` inputs)."""
    attrs = func.attrs or {}
    if "num_input" not in attrs:
        return set()
    return set(func.params[int(attrs["num_input"]):])


class WeightAnalysis:
    """Which expressions of a function depend on its weights alone (constants and weight
    parameters), through its bindings: the ones a lowering may prepare as weights."""

    def __init__(self, func: relax.Function, value_of: dict):
        self.weights = weight_params(func)
        self.value_of = value_of
        self._memo: dict = {}

    def is_weight(self, expr) -> bool:
        if isinstance(expr, tvm.ir.expr.Constant):
            return True
        if isinstance(expr, relax.Var):
            if expr in self.weights:
                return True
            if expr not in self._memo:
                value = self.value_of.get(expr)
                self._memo[expr] = False  # a cycle cannot happen in SSA; guard anyway
                self._memo[expr] = value is not None and self.is_weight(value)
            return self._memo[expr]
        if isinstance(expr, relax.Call):
            return all(self.is_weight(a) for a in expr.args)
        if isinstance(expr, relax.Tuple):
            return all(self.is_weight(f) for f in expr.fields)
        if isinstance(expr, relax.TupleGetItem):
            return self.is_weight(expr.tuple_value)
        # shapes, prim values, strings, dtypes: no tensor data
        return not isinstance(expr, (relax.Var, relax.Function))

    @staticmethod
    def all_constant(exprs) -> bool:
        return all(isinstance(e, tvm.ir.expr.Constant) for e in exprs)


def preparation(builder: relax.BlockBuilder, weights, visit):
    """``(xp, read, argument)`` for preparing ``weights`` (the expressions a lowering turns
    into kernel parameters): when all are constants, numpy at compile time (``read`` their
    values, ``argument`` a Relax constant: baked into the module); else Relax ops on the
    weight inputs (``read`` maps an expression into the function being rewritten with
    ``visit``, ``argument`` keeps the prepared expression, lifted out later)."""
    if WeightAnalysis.all_constant(weights):
        return NUMPY, lambda expr, *_what: expr.value.numpy(), constant
    return RelaxArrays(builder), lambda expr, *_what: visit(expr), lambda expr: expr
