"""LowerLASOps: replace ``las.*`` calls by our kernels (the one LAS dispatch pass).

Input: a Relax function where LAS ops are ``call_pure_packed("las.<op>", ...)`` on NCHW tensors
(see ``frontend.convert``), after BN folding and layout conversion of the dense rest. Output:
``call_tir`` / ``call_tir_inplace`` of the kernels in ``las_compiler.op`` on NHWC tensors:

* ``las.masker`` -> masker kernel (one int32 flag per patch cell); the op's bool (N, gh, gw)
  value is a reshape + cast of it, dead unless the mask is a model output.
* ``las.sparse_bottleneck`` -> compaction (active cell ids + count) -> ``tensor_to_shape`` of
  the count, so the number of active patches ``n`` is a symbolic Relax shape -> the block's
  kernel pipeline on ``idx[:n]``:

  - ``"fused"``: conv1 on the pixels active windows read (``op.sparse_rows``) ->
    gather+conv3x3 (halo read from the conv1 map) -> conv1x1+scatter-add+ReLU in place into
    the shortcut; S = 1 blocks work on groups of 12 active cells instead of the patch list;
  - ``"halo"``: conv1 computed on each active patch's halo inside the gather-conv kernel ->
    conv1x1+scatter-add+ReLU in place;
  - ``"dense"``: the dense block's kernels with conv3's epilogue ``relu(identity + mask *
    branch)``: same result, no gather/scatter, for layers where dense kernels are faster.

BN is folded into the kernels' weights here (numpy, at compile time) and weights are packed
``[K/16][kh][kw][C][16]``. NCHW<->NHWC: an input produced by ``permute_dims(t, NHWC->NCHW)`` is
read as ``t`` directly; results are returned as ``permute_dims(out, NHWC->NCHW)``, which
``CancelTransposePairs`` removes when the consumer wants NHWC again.

In-place scatter: the shortcut buffer is updated in place when the shortcut is dead after the
block (always, in a ResNet); otherwise it is copied first, so the pass never changes a value a
later binding reads.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import tvm
from tvm import relax, tirx
from tvm.relax.expr_functor import PyExprMutator, mutator

from .. import op
from ..frontend.convert import las_op_name
from ..op.geometry import PatchGeometry
from ..op.params import pack_weight
from .kernel_table import KernelTable, constant, fold_bn_arrays, numpy_of

PIPELINES = ("fused", "halo", "dense")
TO_NHWC, TO_NCHW = (0, 2, 3, 1), (0, 3, 1, 2)


def auto_pipeline(granularity: int) -> str:
    """The block pipeline to use when the caller does not choose (``"auto"``).

    Interim policy until the latency predictor chooses per layer: ``fused`` for every S.
    Measured on LAS-ResNet-50 4-4-2-1 (2 threads): S = 1 stage-4 blocks as ``fused`` (row
    groups) vs ``dense``: 24.1 vs 26.3 ms at r = 0.3, 32.5 vs 32.8 at r = 0.5, 37.2 vs 37.4 at
    r = 0.7. Stage 4 is bound by streaming its weights (9.4 MB per 3x3 conv), which sparsity
    does not reduce, so the two are close there.
    """
    del granularity  # the predictor will use it
    return "fused"


@tvm.transform.module_pass(opt_level=0, name="LowerLASOps")
class LowerLASOps:
    """Lower every ``las.*`` op of every Relax function in the module.

    Parameters
    ----------
    target
        The compile target (kernels are target-neutral today; rules schedule them later).
    pipelines
        Kernel pipeline per dynamic block in execution order, or one name for all blocks
        (see :data:`PIPELINES`).
    """

    def __init__(self, target: tvm.target.Target, pipelines: str | Sequence[str] = "fused"):
        self.target = target
        names = [pipelines] if isinstance(pipelines, str) else list(pipelines)
        for name in names:
            if name not in PIPELINES and name != "auto":
                raise ValueError(f"unknown block pipeline {name!r}; choose from {PIPELINES}")
        self.pipelines = pipelines

    def transform_module(self, mod: tvm.IRModule, _ctx) -> tvm.IRModule:
        rewriter = _Rewriter(mod, self.pipelines)
        for gvar, func in list(mod.functions_items()):
            if isinstance(func, relax.Function):
                rewriter.prepare(func)
                rewriter.builder_.update_func(gvar, rewriter.visit_expr(func))
        if rewriter.pending_pipelines():
            raise ValueError(f"{len(self.pipelines)} block pipelines given but the model has "
                             f"{rewriter.block_index} dynamic blocks")
        return rewriter.builder_.get()


def _permutation(value) -> tuple[int, ...] | None:
    if isinstance(value, relax.Call) and isinstance(value.op, tvm.ir.Op) \
            and value.op.name == "relax.permute_dims" and value.attrs.axes is not None:
        return tuple(int(a) for a in value.attrs.axes)
    return None


def _shape(expr) -> tuple[int, ...]:
    return tuple(int(d) for d in expr.ty.shape)


@mutator
class _Rewriter(PyExprMutator):
    def __init__(self, mod: tvm.IRModule, pipelines):
        super().__init__(mod)
        self.kernels = KernelTable(self.builder_)
        self.pipelines = pipelines
        self.block_index = 0
        self.masks: dict[relax.Var, relax.Expr] = {}  # masker result var -> int32 cell flags

    # -- analysis of the original function ------------------------------------------------
    def prepare(self, func: relax.Function) -> None:
        """Index bindings: value of each var, position, and last use (through transposes)."""
        self.value_of, self.position, self.var_of = {}, {}, {}
        last_use: dict[relax.Var, float] = {}
        alias: dict[relax.Var, relax.Var] = {}  # transposed view -> source
        bindings = [b for block in func.body.blocks for b in block.bindings]
        for index, binding in enumerate(bindings):
            var, value = binding.var, binding.value
            self.value_of[var], self.position[var] = value, index
            self.var_of[value] = var
            if _permutation(value) is not None and isinstance(value.args[0], relax.Var):
                alias[var] = alias.get(value.args[0], value.args[0])
            for used in relax.analysis.free_vars(value):
                last_use[used] = index
                if used in alias:
                    last_use[alias[used]] = index
        for used in relax.analysis.free_vars(func.body.body):  # function outputs
            last_use[alias.get(used, used)] = last_use[used] = float("inf")
        self.last_use = last_use

    def pending_pipelines(self) -> bool:
        return not isinstance(self.pipelines, str) and self.block_index != len(self.pipelines)

    # -- helpers --------------------------------------------------------------------------
    def emit(self, expr, name: str = "") -> relax.Var:
        return self.builder_.emit(expr, name)

    def _source(self, expr):
        """The NHWC tensor an NCHW argument is a transpose of (original var), or None."""
        if isinstance(expr, relax.Var) and _permutation(self.value_of.get(expr)) == TO_NCHW:
            return self.value_of[expr].args[0]
        return None

    def nhwc(self, expr):
        source = self._source(expr)
        if source is not None:
            return self.visit_expr(source)
        return self.emit(relax.op.permute_dims(self.visit_expr(expr), TO_NHWC))

    def call(self, generator, gen_args, args, out_shape, dtype="float32", name=""):
        gvar = self.kernels.get(generator, *gen_args)
        return self.emit(relax.call_tir(gvar, args, out_ty=relax.TensorType(out_shape, dtype)),
                         name)

    def call_inplace(self, generator, gen_args, args, index, name=""):
        gvar = self.kernels.get(generator, *gen_args)
        return self.emit(relax.call_tir_inplace(gvar, args, index, out_ty=args[index].ty), name)

    # -- dispatch -------------------------------------------------------------------------
    def visit_call_(self, call: relax.Call):
        name = las_op_name(call)
        if name is None:
            return super().visit_call_(call)
        if name == "las.masker":
            return self._lower_masker(call)
        if name == "las.sparse_bottleneck":
            return self._lower_sparse_bottleneck(call)
        raise ValueError(f"Unknown las op {name}; known: las.masker, las.sparse_bottleneck")

    def _lower_masker(self, call: relax.Call):
        x, weight, bias, granularity, stride = call.args[1:]
        n, c, h, w = _shape(x)
        geometry = PatchGeometry(n, h, w, int(granularity.value), int(stride.value))
        flags = self.call(op.masker, (geometry, c),
                          [self.nhwc(x), constant(numpy_of(weight, "masker weight")[:, :, 0, 0]),
                           constant(numpy_of(bias, "masker bias"))],
                          (geometry.num_cells,), "int32", "mask_flags")
        self.masks[self.var_of[call]] = flags
        grid = self.emit(relax.op.reshape(flags, (n, *geometry.grid)))
        return relax.op.astype(grid, "bool")

    def _cell_flags(self, mask):
        if mask in self.masks:
            return self.masks[mask]
        flat = self.emit(relax.op.reshape(self.visit_expr(mask), (int(np.prod(_shape(mask))),)))
        return self.emit(relax.op.astype(flat, "int32"))

    def _pipeline(self, granularity: int) -> str:
        if self.pipelines == "auto":
            return auto_pipeline(granularity)
        if isinstance(self.pipelines, str):
            return self.pipelines
        if self.block_index >= len(self.pipelines):
            raise ValueError(f"{len(self.pipelines)} block pipelines given but the model has "
                             f"more dynamic blocks")
        return self.pipelines[self.block_index]

    def _lower_sparse_bottleneck(self, call: relax.Call):
        args = call.args[1:]
        x, identity, mask = args[:3]
        convs = [args[3 + 5 * i: 8 + 5 * i] for i in range(3)]
        granularity, stride, eps = (a.value for a in args[18:21])
        pipeline = self._pipeline(int(granularity))
        self.block_index += 1
        n, c, h, w = _shape(x)
        g = PatchGeometry(n, h, w, int(granularity), int(stride))
        folded = [fold_bn_arrays(*(numpy_of(t, "bottleneck weight") for t in conv), float(eps))
                  for conv in convs]
        (w1, b1), (w2, b2), (w3, b3) = [(constant(pack_weight(wt)), constant(bs))
                                        for wt, bs in folded]
        width, k = folded[0][0].shape[0], folded[2][0].shape[0]

        flags = self._cell_flags(mask)
        if pipeline == "dense":
            return self._lower_dense_block(x, identity, flags, g, (w1, b1, w2, b2, w3, b3),
                                           (c, width, k))

        x_nhwc = self.nhwc(x)
        plain = identity.same_as(x) or (self._source(x) is not None and
                                        self._source(x).same_as(self._source(identity)))
        shortcut = x_nhwc if plain else self.nhwc(identity)
        source = self._source(identity)  # None: nhwc() made a fresh transpose, ours to update
        if source is not None and self.last_use.get(source, 0) > self.position[self.var_of[call]]:
            size = int(np.prod(_shape(shortcut)))
            flat = self.emit(relax.op.reshape(shortcut, (size,)))
            copied = self.call(op.copy, (size,), [flat], (size,), name="shortcut_copy")
            shortcut = self.emit(relax.op.reshape(copied, _shape(shortcut)))

        if pipeline == "fused" and g.granularity == 1:
            out = self._lower_single_pixel_patches(x_nhwc, shortcut, flags, g,
                                                   (w1, b1, w2, b2, w3, b3), (c, width, k))
        else:
            out = self._lower_patches(pipeline, x_nhwc, shortcut, flags, g,
                                      (w1, b1, w2, b2, w3, b3), (c, width, k))
        if not plain:  # inactive pixels of a projected shortcut need the ReLU
            size = int(np.prod(_shape(out)))
            flat = self.emit(relax.op.reshape(out, (size,)))
            flat = self.call_inplace(op.relu_inplace, (size,), [flat, flat], 1)
            out = self.emit(relax.op.reshape(flat, _shape(out)))
        return relax.op.permute_dims(out, TO_NCHW)

    def _lower_patches(self, pipeline, x_nhwc, shortcut, flags, g, weights, channels):
        """fused / halo over the compacted active patch list (symbolic n)."""
        w1, b1, w2, b2, w3, b3 = weights
        c, width, k = channels
        cells, active = self._scan(self.kernels.get(op.compact, g.num_cells), flags,
                                   (g.num_cells,), "active")
        idx = self.call(op.active_prefix, (g.num_cells,), [cells], (active,), "int32", "idx")
        patch_out = (active, g.granularity**2, width)
        if pipeline == "halo":
            y2 = self.call(op.halo_conv3x3, (g, c, width), [x_nhwc, idx, w1, b1, w2, b2],
                           patch_out)
        else:
            h1 = self._conv1_on_dilated_pixels(x_nhwc, flags, g, w1, b1, c, width)
            y2 = self.call(op.gather_conv3x3, (g, width, width), [h1, idx, w2, b2], patch_out)
        return self.call_inplace(op.conv1x1_scatter_add, (g, width, k),
                                 [y2, idx, w3, b3, shortcut, shortcut], 5, "block_out")

    def _scan(self, gvar, flags, list_shape, name: str):
        """Run a scan kernel ``(flags) -> (list, count[1])``; returns the list and the count as
        a symbolic Relax shape variable (``tensor_to_shape``: the one host sync per list)."""
        both = self.emit(relax.call_tir(gvar, [flags], out_ty=[
            relax.TensorType(list_shape, "int32"), relax.TensorType((1,), "int32")]))
        count = self.emit(relax.op.astype(relax.TupleGetItem(both, 1), "int64"))
        var = tirx.Var(f"{name}{self.block_index - 1}", "int64")
        self.builder_.match_cast(self.emit(relax.op.tensor_to_shape(count)),
                                 relax.ShapeType([var]))
        return self.emit(relax.TupleGetItem(both, 0)), var

    def _row_groups(self, generator, flags, g: PatchGeometry, max_groups: int, name: str):
        """A (groups, ROW_GROUP) pixel or cell list from ``generator(g)``; groups symbolic."""
        rows, groups = self._scan(self.kernels.get(generator, g), flags,
                                  (max_groups, op.ROW_GROUP), name)
        return self.call(op.row_groups_prefix, (max_groups,), [rows], (groups, op.ROW_GROUP),
                         "int32", name)

    def _conv1_on_dilated_pixels(self, x_nhwc, flags, g: PatchGeometry, w1, b1, c, width):
        """conv1 (+BN+ReLU) at the pixels active windows read; an (N, H, W, width) map whose
        other pixels are never read."""
        pixels = g.batch * g.height * g.width
        flat = self.emit(relax.op.reshape(x_nhwc, (pixels, c)))
        h1 = self.call(op.conv1x1_rows, (pixels, c, width),
                       [flat, self._dilated_rows(flags, g), w1, b1], (pixels, width))
        return self.emit(relax.op.reshape(h1, (g.batch, g.height, g.width, width)))

    def _dilated_rows(self, flags, g: PatchGeometry):
        """The input pixels active windows read, in groups (conv1's work list)."""
        return self._row_groups(op.dilated_rows, flags, g, op.max_row_groups(g), "conv1_rows")

    def _lower_single_pixel_patches(self, x_nhwc, shortcut, flags, g, weights, channels):
        """S = 1 fused pipeline on groups of 12 active cells: a one-pixel patch would give the
        micro-kernel a 1 x 16 tile that reloads every weight per patch."""
        w1, b1, w2, b2, w3, b3 = weights
        c, width, k = channels
        cells = self._row_groups(op.active_rows, flags, g, -(-g.num_cells // op.ROW_GROUP),
                                 "cell_rows")
        h1 = self._conv1_on_dilated_pixels(x_nhwc, flags, g, w1, b1, c, width)
        groups = cells.ty.shape[0]
        y2 = self.call(op.gather_conv3x3_rows, (g, width, width), [h1, cells, w2, b2],
                       (groups, op.ROW_GROUP, width))
        return self.call_inplace(op.conv1x1_scatter_add_rows, (g, width, k),
                                 [y2, cells, w3, b3, shortcut, shortcut], 5, "block_out")

    def _lower_dense_block(self, x, identity, flags, g: PatchGeometry, weights, channels):
        """Every pixel computed with the dense kernels; the mask gates conv3's epilogue."""
        w1, b1, w2, b2, w3, b3 = weights
        c, width, k = channels
        n, h, w = g.batch, g.height, g.width
        out_pixels = n * g.out_height * g.out_width
        dummy = constant(np.zeros((1, 1)))
        flat = self.emit(relax.op.reshape(self.nhwc(x), (n * h * w, c)))
        h1 = self.call(op.conv1x1, (n, h, w, c, width, 1, "relu"), [flat, w1, b1, dummy],
                       (n * h * w, width))
        h1 = self.emit(relax.op.reshape(h1, (n, h, w, width)))
        h2 = self.call(op.conv2d, (n, h, w, width, width, 3, g.stride, 1, "relu"),
                       [h1, w2, b2, dummy], (out_pixels, width))
        shortcut = self.emit(relax.op.reshape(self.nhwc(identity), (out_pixels, k)))
        out = self.call(op.conv1x1, (n, g.out_height, g.out_width, width, k, 1,
                                     "masked_add_relu", g.granularity),
                        [h2, w3, b3, shortcut, flags], (out_pixels, k), name="block_out")
        out = self.emit(relax.op.reshape(out, (n, g.out_height, g.out_width, k)))
        return relax.op.permute_dims(out, TO_NCHW)
