"""The LAS operators of a Relax module: one place that knows their argument layout.

A dynamic bottleneck block is one call

    (out, mask) = R.call_pure_packed("las.sparse_bottleneck", x, identity, masker_weight,
                                     masker_bias, <conv1: weight, gamma, beta, mean, var>,
                                     <conv2: ...>, <conv3: ...>, granularity, stride, eps,
                                     projected, pipeline, name)

an opaque, pure call that every generic Relax pass (constant folding, layout conversion, dead
code elimination) leaves alone, and that ``transform.LowerLASOps`` replaces with the kernels of
the block's pipeline. Tensors are NCHW as a framework hands them over; BN is unfolded (the
lowering folds it). ``identity`` is the shortcut (``x`` itself, or a downsample computed by
ordinary Relax ops) and ``projected`` says which: generic passes may give ``x`` and a plain
block's ``identity`` separate bindings of one value (layout conversion transposes each
argument on its own), so whether the shortcut *is* the block input, and thus a buffer other
patches still read, is recorded by the frontend, not recovered from the expressions.
``mask`` is the block's (N, gh, gw) patch mask, returned so a compiled network can be checked
mask by mask. ``pipeline`` is the block's kernel pipeline (a name of
:data:`las_compiler.block_pipelines.PIPELINES`, or ``"auto"`` until
``transform.ChooseBlockPipelines`` decides), ``name`` the block's name in reports.

Frontends build calls with :meth:`SparseBottleneck.to_call`; passes read them with
:meth:`SparseBottleneck.from_call`. Nobody else indexes the argument list.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import tvm
from tvm import relax, tirx

from .geometry import BlockGeometry, PatchGeometry, patch_grid

SPARSE_BOTTLENECK = "las.sparse_bottleneck"
LAS_OPS = (SPARSE_BOTTLENECK,)


@dataclass(frozen=True)
class ConvBN:
    """A bias-free conv's weight (OIHW) and the eval-mode BN after it."""

    weight: relax.Expr
    gamma: relax.Expr
    beta: relax.Expr
    mean: relax.Expr
    var: relax.Expr

    def tensors(self) -> list[relax.Expr]:
        return [self.weight, self.gamma, self.beta, self.mean, self.var]


@dataclass(frozen=True)
class SparseBottleneck:
    """The arguments of one ``las.sparse_bottleneck`` call, by name."""

    x: relax.Expr
    identity: relax.Expr
    masker_weight: relax.Expr
    masker_bias: relax.Expr
    conv1: ConvBN
    conv2: ConvBN
    conv3: ConvBN
    granularity: int
    stride: int
    eps: float
    projected: bool  # identity is a downsample's output, not x itself
    pipeline: str = "auto"
    name: str = ""

    TENSORS = 4 + 3 * 5  # x, identity, masker weight and bias, three conv+BN
    ATTRS = 6  # granularity, stride, eps, projected, pipeline, name

    # -- shapes -------------------------------------------------------------------------
    @property
    def input_shape(self) -> tuple[int, int, int, int]:
        """(N, C, H, W) of the block input."""
        return tuple(int(d) for d in self.x.ty.shape)

    @property
    def output_shape(self) -> tuple[int, int, int, int]:
        return tuple(int(d) for d in self.identity.ty.shape)

    @property
    def grid(self) -> tuple[int, int]:
        _, _, ho, wo = self.output_shape
        return patch_grid(ho, wo, self.granularity)

    @property
    def mask_type(self) -> relax.TensorType:
        return relax.TensorType((self.input_shape[0], *self.grid), "bool")

    @property
    def width(self) -> int:
        """Channels of conv1 and conv2 (the block's ``planes``)."""
        return int(self.conv1.weight.ty.shape[0])

    def geometry(self) -> BlockGeometry:
        """The block as its kernels see it (patch geometry, channels, shortcut)."""
        n, c, h, w = self.input_shape
        return BlockGeometry(PatchGeometry(n, h, w, self.granularity, self.stride), c,
                             self.width, self.output_shape[1], projected=self.projected)

    def layer(self):
        """The block as the latency predictor sees it (``predictor.layers.BlockLayer``)."""
        from .predictor.layers import BlockLayer

        n, c, h, w = self.input_shape
        return BlockLayer(n, h, w, c, self.width, self.output_shape[1], self.stride,
                          downsample=self.projected, name=self.name)

    # -- packing ------------------------------------------------------------------------
    def to_call(self) -> relax.Call:
        tensors = [self.x, self.identity, self.masker_weight, self.masker_bias,
                   *self.conv1.tensors(), *self.conv2.tensors(), *self.conv3.tensors()]
        attrs = [relax.prim_value(int(self.granularity)), relax.prim_value(int(self.stride)),
                 relax.prim_value(tirx.FloatImm("float32", float(self.eps))),
                 relax.prim_value(int(bool(self.projected))), relax.expr.String(self.pipeline),
                 relax.expr.String(self.name)]
        return relax.op.call_pure_packed(
            SPARSE_BOTTLENECK, *tensors, *attrs,
            ty_args=relax.TupleType([self.identity.ty, self.mask_type]))

    @classmethod
    def from_call(cls, call: relax.Call) -> SparseBottleneck:
        if las_op_name(call) != SPARSE_BOTTLENECK:
            raise ValueError(f"not a {SPARSE_BOTTLENECK} call: {call}")
        args = list(call.args[1:])
        if len(args) != cls.TENSORS + cls.ATTRS:
            raise ValueError(f"{SPARSE_BOTTLENECK} takes {cls.TENSORS + cls.ATTRS} arguments, "
                             f"got {len(args)}")
        x, identity, masker_weight, masker_bias = args[:4]
        convs = [ConvBN(*args[4 + 5 * i: 9 + 5 * i]) for i in range(3)]
        granularity, stride, eps, projected, pipeline, name = args[cls.TENSORS:]
        return cls(x, identity, masker_weight, masker_bias, *convs,
                   granularity=int(granularity.value), stride=int(stride.value),
                   eps=float(eps.value), projected=bool(int(projected.value)),
                   pipeline=str(pipeline.value), name=str(name.value))

    def replace(self, **changes) -> SparseBottleneck:
        return dataclasses.replace(self, **changes)


def las_op_name(call: relax.Expr) -> str | None:
    """``"las.<op>"`` if ``call`` is a LAS op call (see the module docstring), else None."""
    if not isinstance(call, relax.Call) or not isinstance(call.op, tvm.ir.Op):
        return None
    if call.op.name != "relax.call_pure_packed" or not call.args:
        return None
    callee = call.args[0]
    if isinstance(callee, relax.ExternFunc) and str(callee.global_symbol).startswith("las."):
        return str(callee.global_symbol)
    return None


def las_blocks(mod: tvm.IRModule) -> list[SparseBottleneck]:
    """Every ``las.sparse_bottleneck`` call of the module's Relax functions, in program order."""
    blocks = []
    for _, func in mod.functions_items():
        if isinstance(func, relax.Function):
            def visit(expr):
                if las_op_name(expr) == SPARSE_BOTTLENECK:
                    blocks.append(SparseBottleneck.from_call(expr))

            relax.analysis.post_order_visit(func, visit)
    return blocks
