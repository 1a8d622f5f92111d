"""Fold eval-mode BN into the conv before it, for constant weights and weight inputs alike.

TVM's ``FoldBatchnormToConv2D`` matches constant weights only. With weights as module inputs
(``weight_ops``) the dense convs' BN must fold too, or those convs would never reach our
kernels: ``conv2d(x, w)`` then ``batch_norm(gamma, beta, mean, var)`` becomes
``conv2d(x, w * s) + (beta - mean * s)`` with ``s = gamma / sqrt(var + eps)``, Relax ops that
``FoldConstant`` evaluates for constants and ``LiftTransformParams`` lifts for inputs.
"""

from __future__ import annotations

import numpy as np
from tvm import relax
from tvm.relax.dpl import TupleGetItemPattern, is_op, rewrite_call, wildcard

from .weight_ops import WeightAnalysis


@relax.transform.function_pass(opt_level=0, name="FoldBatchNorm")
class FoldBatchNorm:
    def transform_function(self, func, _mod, _ctx):
        if not isinstance(func, relax.Function) or int((func.attrs or {}).get("Primitive", 0)):
            return func
        data, weight = wildcard(), wildcard()
        conv = is_op("relax.nn.conv2d")(data, weight)
        stats = [wildcard() for _ in range(4)]
        batch_norm = is_op("relax.nn.batch_norm")(conv, *stats)
        pattern = TupleGetItemPattern(batch_norm, 0)
        bindings = {b.var: b.value for block in func.body.blocks for b in block.bindings}
        weights = WeightAnalysis(func, bindings)

        def rewrite(expr, matches):
            conv_call, bn_call = matches[conv], matches[batch_norm]
            gamma, beta, mean, var = (matches[s] for s in stats)
            w = matches[weight]
            if conv_call.attrs.kernel_layout != "OIHW" or int(bn_call.attrs.axis) != 1 \
                    or not all(weights.is_weight(e) for e in (w, gamma, beta, mean, var)):
                return expr
            channels = int(w.ty.shape[0])
            eps = relax.const(np.float32(float(bn_call.attrs.epsilon)))
            scale = relax.op.divide(gamma, relax.op.sqrt(relax.op.add(var, eps)))
            shift = relax.op.subtract(beta, relax.op.multiply(mean, scale))
            folded = relax.op.multiply(w, relax.op.reshape(scale, (channels, 1, 1, 1)))
            out = relax.Call(conv_call.op, (matches[data], folded), conv_call.attrs)
            return relax.op.add(out, relax.op.reshape(shift, (1, channels, 1, 1)))

        return rewrite_call(pattern, rewrite, func)


