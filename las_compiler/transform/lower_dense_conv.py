"""LowerDenseConv: NHWC ``conv2d`` + bias [+ residual] [+ ReLU] -> one of our dense kernels.

Relax's legalised conv2d has no CPU schedule worth running (the untuned default was ~100x
slower than ONNX Runtime here); our dense kernels share the sparse kernels' register-tiled
micro-kernel. Matched chains (after ``FoldBatchnormToConv2D`` and ``ConvertLayout`` to NHWC /
OHWI, with constant weights):

* ``relu(add(add(conv2d(x, W), B), R))`` -> epilogue ``add_relu`` (the dense block's conv3);
* ``relu(add(conv2d(x, W), B))`` -> ``relu`` (stem, conv1, conv2);
* ``add(conv2d(x, W), B)`` whose value is used elsewhere -> ``none`` (downsample shortcut);
* ``conv2d`` alone -> ``none`` with a zero bias;
* ``add(matmul(x, W), b)`` (the classifier) -> ``op.conv1x1`` on N one-pixel images.

1x1 kernels (any stride) go to ``op.conv1x1``, others to ``op.conv2d``. Convs that do not fit
(groups, dilation, channels not a multiple of 16, non-constant weights) stay Relax convs and are
legalised; the pass never fails on them.
"""

from __future__ import annotations

import numpy as np
import tvm
from tvm import relax
from tvm.relax.expr_functor import PyExprMutator, mutator

from ..op.params import CHANNEL_BLOCK, linear_as_conv1x1, pack_weight
from .kernel_table import KernelTable, constant
from .weight_ops import WeightAnalysis, preparation


def _op_name(expr) -> str | None:
    if isinstance(expr, relax.Call) and isinstance(expr.op, tvm.ir.Op):
        return expr.op.name
    return None


@tvm.transform.module_pass(opt_level=0, name="LowerDenseConv")
class LowerDenseConv:
    def __init__(self, target: tvm.target.Target):
        self.target = target

    def transform_module(self, mod: tvm.IRModule, _ctx) -> tvm.IRModule:
        rewriter = _Rewriter(mod)
        for gvar, func in list(mod.functions_items()):
            if isinstance(func, relax.Function):
                rewriter.prepare(func)
                rewriter.builder_.update_func(gvar, rewriter.visit_expr(func))
        return relax.transform.DeadCodeElimination()(rewriter.builder_.get())


@mutator
class _Rewriter(PyExprMutator):
    def __init__(self, mod):
        super().__init__(mod)
        self.kernels = KernelTable(self.builder_)

    def prepare(self, func: relax.Function) -> None:
        """Find the chains: ``self.chains`` maps a chain's top call to its match; vars inside
        a chain are left to dead-code elimination."""
        self.value_of: dict[relax.Var, relax.Expr] = {}
        self.uses: dict[relax.Var, int] = {}
        bindings = [b for block in func.body.blocks for b in block.bindings]
        for binding in bindings:
            self.value_of[binding.var] = binding.value
            for used in relax.analysis.free_vars(binding.value):
                self.uses[used] = self.uses.get(used, 0) + 1
        for used in relax.analysis.free_vars(func.body.body):
            self.uses[used] = self.uses.get(used, 0) + 1
        self.weights = WeightAnalysis(func, self.value_of)
        self.chains: dict[relax.Call, tuple] = {}
        absorbed: set[relax.Var] = set()
        for binding in reversed(bindings):  # tops first: a relu absorbs its add and conv
            if binding.var in absorbed:
                continue
            match = self._match(binding.value)
            if match is not None:
                self.chains[binding.value] = match[:4]
                absorbed.update(match[4])

    # -- matching ------------------------------------------------------------------------
    def _value(self, expr, name: str):
        """The value bound to ``expr`` if it is a call of op ``name`` used once, else None."""
        if not isinstance(expr, relax.Var) or self.uses.get(expr, 0) != 1:
            return None
        value = self.value_of.get(expr)
        return value if _op_name(value) == name else None

    def _conv_bias(self, expr):
        """(conv, bias constant or None, vars inside) for ``add(conv2d, const)`` / ``conv2d``."""
        if _op_name(expr) == "relax.nn.conv2d":
            return expr, None, []
        if _op_name(expr) != "relax.add":
            return None
        for conv_arg, bias in (expr.args, expr.args[::-1]):
            conv = self._value(conv_arg, "relax.nn.conv2d")
            if conv is not None and self.weights.is_weight(bias):
                return conv, bias, [conv_arg]
        return None

    def _match(self, value):
        """(conv, bias, epilogue, residual, absorbed vars) for a chain topped by ``value``."""
        linear = self._linear(value)
        if linear is not None:
            return linear
        if _op_name(value) == "relax.nn.relu":
            arg = value.args[0]
            biased = self._value(arg, "relax.add")
            if biased is None:
                return None
            match = self._conv_bias(biased)
            if match is not None:
                return match[0], match[1], "relu", None, [arg, *match[2]]
            for inner, residual in (biased.args, biased.args[::-1]):
                inner_value = self._value(inner, "relax.add")
                match = self._conv_bias(inner_value) if inner_value is not None else None
                if match is not None:
                    return match[0], match[1], "add_relu", residual, [arg, inner, *match[2]]
            return None
        match = self._conv_bias(value)
        if match is not None:
            return match[0], match[1], "none", None, match[2]
        return None

    def _linear(self, value):
        """``add(matmul(x, W), b)`` with constant 2-D W and b: the classifier."""
        if _op_name(value) != "relax.add":
            return None
        for mm_arg, bias in (value.args, value.args[::-1]):
            matmul = self._value(mm_arg, "relax.matmul")
            if matmul is not None and self.weights.is_weight(bias) \
                    and self.weights.is_weight(matmul.args[1]) \
                    and len(matmul.args[0].ty.shape) == 2:
                return matmul, bias, "linear", None, [mm_arg]
        return None

    def visit_call_(self, call: relax.Call):
        match = self.chains.get(call)
        if match is not None:
            lowered = self._lower(*match)
            if lowered is not None:
                return lowered
        return super().visit_call_(call)

    # -- lowering ------------------------------------------------------------------------
    def _lower(self, conv: relax.Call, bias, epilogue: str, residual=None):
        if epilogue == "linear":
            return self._lower_linear(conv, bias)
        attrs = conv.attrs
        x, weight = conv.args
        if not self.weights.is_weight(weight) or attrs.data_layout != "NHWC" \
                or attrs.kernel_layout != "OHWI" or int(attrs.groups) != 1 \
                or any(int(d) != 1 for d in attrs.dilation):
            return None
        k, kh, kw, c = (int(d) for d in weight.ty.shape)  # OHWI
        stride = [int(s) for s in attrs.strides]
        pad = [int(p) for p in attrs.padding]
        if k % CHANNEL_BLOCK or kh != kw or stride[0] != stride[1] or len(set(pad)) != 1:
            return None
        n, h, wd, _ = (int(d) for d in x.ty.shape)
        out_shape = tuple(int(d) for d in conv.ty.shape)
        m = int(np.prod(out_shape[:3]))
        bias_size = int(np.prod([int(d) for d in bias.ty.shape])) if bias is not None else k
        if bias_size not in (1, k):
            return None  # not a per-channel bias
        xp, value, as_arg = preparation(
            self.builder_, [weight] + ([bias] if bias is not None else []), self.visit_expr)
        w = xp.transpose(value(weight), (0, 3, 1, 2))  # OHWI -> OIHW
        b = xp.zeros((k,)) if bias is None else xp.broadcast(
            xp.reshape(value(bias), (bias_size,)), (k,))
        x_new = self.visit_expr(x)
        res = constant(np.zeros((1, 1)))
        if residual is not None:
            res = self.builder_.emit(relax.op.reshape(self.visit_expr(residual), (m, k)))
        if kh == 1 and pad[0] == 0:
            if stride[0] == 1:
                x_new = self.builder_.emit(relax.op.reshape(x_new, (n * h * wd, c)))
            gvar, _ = self.kernels.get("conv1x1", n, h, wd, c, k, stride[0], epilogue)
        else:
            gvar, _ = self.kernels.get("conv2d", n, h, wd, c, k, kh, stride[0], pad[0], epilogue)
        y = self.builder_.emit(relax.call_tir(
            gvar, [x_new, as_arg(pack_weight(w, xp=xp)), as_arg(b), res],
            out_ty=relax.TensorType((m, k), "float32")))
        return relax.op.reshape(y, out_shape)

    def _lower_linear(self, matmul: relax.Call, bias):
        """The classifier as a 1x1 conv over N one-pixel images (the GEMM micro-kernel);
        output channels are zero-padded to a multiple of 16 and sliced off afterwards."""
        x, weight = matmul.args
        c, k = (int(d) for d in weight.ty.shape)  # x @ w
        xp, value, as_arg = preparation(self.builder_, [weight, bias],
                                         self.visit_expr)
        w_oi, b_pad = linear_as_conv1x1(value(weight), value(bias), xp=xp)
        padded = -(-k // CHANNEL_BLOCK) * CHANNEL_BLOCK
        n = int(x.ty.shape[0])
        gvar, _ = self.kernels.get("conv1x1", n, 1, 1, c, padded, 1, "none")
        y = self.builder_.emit(relax.call_tir(
            gvar, [self.visit_expr(x), as_arg(pack_weight(w_oi, xp=xp)), as_arg(b_pad),
                   constant(np.zeros((1, 1)))],
            out_ty=relax.TensorType((n, padded), "float32")))
        if padded == k:
            return y
        return relax.op.strided_slice(y, axes=[1], begin=[0], end=[k])
