"""CancelTransposePairs: ``permute_dims(permute_dims(t, a), b)`` -> ``t`` when b undoes a.

An identity ``permute_dims`` alone (ConvertLayout leaves one where a model's own transpose
becomes a no-op in the new layout) is removed too: it would legalise to a copy.

Layout conversion and LAS lowering each keep their own layout contract at op boundaries
(ConvertLayout transposes back to NCHW around ops it does not know; LowerLASOps transposes to
NHWC and back), so a network in NHWC end to end is a chain of such round trips. Composed
transposes that are not the identity become one transpose. Relax's own
``OptimizeLayoutTransform`` handles ``layout_transform`` pairs only, and decides by comparing
shapes, which is not enough for transposes of equal-sized axes.
"""

from __future__ import annotations

import tvm
from tvm import relax
from tvm.relax.expr_functor import PyExprMutator, mutator


def _axes(expr) -> tuple[int, ...] | None:
    if isinstance(expr, relax.Call) and isinstance(expr.op, tvm.ir.Op) \
            and expr.op.name == "relax.permute_dims":
        ndim = len(expr.args[0].ty.shape)
        axes = expr.attrs.axes
        return tuple(int(a) for a in axes) if axes is not None else tuple(range(ndim))[::-1]
    return None


@tvm.transform.module_pass(opt_level=0, name="CancelTransposePairs")
class CancelTransposePairs:
    def transform_module(self, mod: tvm.IRModule, _ctx) -> tvm.IRModule:
        rewriter = _Rewriter(mod)
        for gvar, func in list(mod.functions_items()):
            if isinstance(func, relax.Function):
                rewriter.builder_.update_func(gvar, rewriter.visit_expr(func))
        return relax.transform.DeadCodeElimination()(rewriter.builder_.get())


@mutator
class _Rewriter(PyExprMutator):
    def visit_call_(self, call: relax.Call):
        outer = _axes(call)
        new = super().visit_call_(call)
        if outer is None:
            return new
        arg = new.args[0]
        if outer == tuple(range(len(outer))):
            return arg
        inner_value = self.lookup_binding(arg) if isinstance(arg, relax.Var) else None
        inner = _axes(inner_value)
        if inner is None:
            return new
        composed = tuple(inner[i] for i in outer)  # out[i] = src[inner[outer[i]]]
        source = inner_value.args[0]
        if composed == tuple(range(len(composed))):
            return source
        return relax.op.permute_dims(source, composed)
