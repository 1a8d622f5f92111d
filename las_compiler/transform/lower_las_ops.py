"""LowerLASOps: replace every ``las.*`` call by the kernels of its block pipeline.

The one dispatch pass for LAS ops. For ``las.sparse_bottleneck`` (see
:mod:`las_compiler.las_ops`): fold BN into the three convs and pack the weights, view the
block's input and shortcut as NHWC, and emit the steps of the block's pipeline from
:data:`las_compiler.block_pipelines.PIPELINES` (the call says which; ``"auto"`` must have been
resolved by ``ChooseBlockPipelines``). The call's results become the pipeline's output map
(back to NCHW: the transposes cancel between blocks, see ``CancelTransposePairs``) and the
masker's flags as the (N, gh, gw) bool mask. An unknown ``las.*`` op is an error.

A projected block whose shortcut is ``add(conv2d_1x1(x), bias)`` with weights (what BN
folding leaves of a LASNet downsample), used by nothing else, computes that conv among its own
kernels where its pipeline can (``BlockGeometry.shortcut_conv``): after the masker, with the
ReLU of the inactive pixels in its epilogue, so no ReLU pass over the output map follows. The
original chain is left dead (dead-code elimination drops it).

In-place updates: pipelines scatter-add into the shortcut in place, which is sound only when
nothing reads the shortcut's buffer after the block. The pass tracks each value back to the
buffer it views (through transposes, reshapes and tuple items) and copies the shortcut first
when that buffer is read later, is a function output, or is a function parameter (the
caller's tensor; ``donate_params=True`` allows updating it, as a block inside a network
updates the previous block's output).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import numpy as np
import tvm
from tvm import relax
from tvm.relax.expr_functor import PyExprMutator, mutator

from ..block_pipelines import get_pipeline
from ..las_ops import SPARSE_BOTTLENECK, SparseBottleneck, las_op_name
from ..masker_chain import ALONE, ChainPosition, chain_positions, chained_step, links
from ..op.params import fold_bn, pack_weight, with_masker_tile
from .kernel_table import KernelTable, constant
from .step_emitter import StepEmitter
from .weight_ops import WeightAnalysis, preparation

TO_NHWC, TO_NCHW = (0, 2, 3, 1), (0, 3, 1, 2)


def block_params(op: SparseBottleneck, xp, value) -> dict[str, Callable]:
    """The named parameters steps read (see ``block_pipelines``), computed on demand with the
    array namespace ``xp`` from the op's weights as ``value(tensor, what)`` reads them (see
    ``weight_ops.preparation``)."""
    cache: dict[int, tuple] = {}

    def folded(index: int):
        if index not in cache:
            conv = (op.conv1, op.conv2, op.conv3)[index - 1]
            arrays = [value(t, f"{op.name or 'block'} conv{index} weight/BN")
                      for t in conv.tensors()]
            cache[index] = fold_bn(*arrays, op.eps, xp=xp)
        return cache[index]

    in_c = int(op.masker_weight.ty.shape[1])
    masker_w = lambda: xp.reshape(value(op.masker_weight, "masker weight"),  # noqa: E731
                                  (2, in_c))
    masker_b = lambda: value(op.masker_bias, "masker bias")  # noqa: E731
    params = {"masker_w": masker_w, "masker_b": masker_b}
    for index in (1, 2, 3):
        params[f"w{index}"] = lambda i=index: pack_weight(folded(i)[0], xp=xp)
        params[f"b{index}"] = lambda i=index: folded(i)[1]

    def conv1_with_masker():
        weight, bias = with_masker_tile(*folded(1), masker_w(), masker_b(), xp=xp)
        return pack_weight(weight, xp=xp), bias

    params["w1_masker"] = lambda: conv1_with_masker()[0]
    params["b1_masker"] = lambda: conv1_with_masker()[1]
    return params


def downsample_params(weight, bias, channels: int, xp, value) -> dict[str, Callable]:
    """``ds_w`` / ``ds_b`` of a block that computes its projection: the 1x1 conv's OHWI weight
    packed, its bias (BN folded in by then) as one value per channel."""
    def packed():
        return pack_weight(xp.transpose(value(weight, "downsample weight"), (0, 3, 1, 2)), xp=xp)

    def per_channel():
        b = value(bias, "downsample bias")
        return xp.broadcast(xp.reshape(b, (int(np.prod(xp.shape(b))),)), (channels,))

    return {"ds_w": packed, "ds_b": per_channel}


def chain_params(chain: list[SparseBottleneck], xp, value) -> dict[str, Callable]:
    """``chain_w`` / ``chain_b`` of a masker chain member: the masker weights (2, C) and
    biases of ``chain`` (the block itself, then the blocks after it), stacked."""
    def weights():
        return xp.concat([xp.reshape(value(m.masker_weight, "masker weight"),
                                     (2, int(m.masker_weight.ty.shape[1]))) for m in chain])

    def biases():
        return xp.concat([value(m.masker_bias, "masker bias") for m in chain])

    return {"chain_w": weights, "chain_b": biases}


@tvm.transform.module_pass(opt_level=0, name="LowerLASOps")
class LowerLASOps:
    """Lower every ``las.*`` op of every Relax function in the module.

    Parameters
    ----------
    target
        The compile target (kernels are target-neutral; rules schedule them later).
    donate_params
        Whether blocks may update a function parameter in place (a one-block module whose
        caller hands over its input, as the block benchmark does).
    """

    def __init__(self, target: tvm.target.Target, donate_params: bool = False):
        self.target = target
        self.donate_params = donate_params

    def transform_module(self, mod: tvm.IRModule, _ctx) -> tvm.IRModule:
        from ..schedules import family_of

        rewriter = _Rewriter(mod, self.donate_params,
                             family_of(self.target).masker_links_across_grids)
        for gvar, func in list(mod.functions_items()):
            if isinstance(func, relax.Function):
                rewriter.prepare(func)
                rewriter.builder_.update_func(gvar, rewriter.visit_expr(func))
        return rewriter.builder_.get()


_VIEWS = ("relax.permute_dims", "relax.reshape")


def _op_name(value) -> str | None:
    if isinstance(value, relax.Call) and isinstance(value.op, tvm.ir.Op):
        return value.op.name
    return None


def _permutation(value) -> tuple[int, ...] | None:
    if _op_name(value) == "relax.permute_dims" and value.attrs.axes is not None:
        return tuple(int(a) for a in value.attrs.axes)
    return None


def _shape(expr) -> tuple[int, ...]:
    return tuple(int(d) for d in expr.ty.shape)


@mutator
class _Rewriter(PyExprMutator):
    def __init__(self, mod: tvm.IRModule, donate_params: bool, across_grids: bool):
        super().__init__(mod)
        self.across_grids = across_grids  # masker chains between grids (masker_chain.links)
        self.kernels = KernelTable(self.builder_)
        self.donate_params = donate_params
        self.blocks = 0
        self.tuples: dict[relax.Var, relax.Tuple] = {}  # lowered call var -> (out, mask)
        # masker chains (``las_compiler.masker_chain``): per block call var, its position,
        # the ops whose logits its masker computes and its predecessor's call var; per
        # lowered block, the (flags, cache) its successor reads
        self.chains: dict[relax.Var, tuple[ChainPosition, list, relax.Var | None]] = {}
        self.chain_state: dict[relax.Var, tuple[relax.Expr, relax.Expr]] = {}

    # -- analysis of the original function ------------------------------------------------
    def prepare(self, func: relax.Function) -> None:
        """Index bindings: value and position of each var, the buffer each var views, and
        the last position that reads each buffer (inf: a function output)."""
        self.value_of, self.position = {}, {}
        self.params = set(func.params)
        bindings = [b for block in func.body.blocks for b in block.bindings]
        self.root: dict[relax.Var, tuple] = {p: (p,) for p in func.params}
        self.last_use: dict[tuple, float] = {}
        self.uses: dict[relax.Var, int] = {}
        for index, binding in enumerate(bindings):
            var, value = binding.var, binding.value
            self.value_of[var], self.position[var] = value, index
            self.root[var] = self._root_of(value, var)
            for used in relax.analysis.free_vars(value):
                self._use(used, index)
                self.uses[used] = self.uses.get(used, 0) + 1
        for used in relax.analysis.free_vars(func.body.body):  # function outputs
            self._use(used, float("inf"))
            self.uses[used] = self.uses.get(used, 0) + 1
        self.weights = WeightAnalysis(func, self.value_of)
        self.chains = self._masker_chains(bindings)

    def _masker_chains(self, bindings) -> dict:
        """Link each block to the block before it (in program order) where its input is that
        block's output and the masker chain's rule allows it (``masker_chain.links``); the
        lowering vouches for the rest of that rule: the earlier block's own input is a
        block's output (non-negative, so the ReLU leaves its inactive pixels as they are),
        and the later block's masker weights are constants or weight inputs (usable before
        the later block's bindings). Positions by ``masker_chain.chain_positions``."""
        calls = [(b.var, SparseBottleneck.from_call(b.value)) for b in bindings
                 if las_op_name(b.value) == SPARSE_BOTTLENECK]
        index = {var: i for i, (var, _) in enumerate(calls)}

        def producer(expr) -> int | None:
            root = self.root.get(expr, (expr,)) if isinstance(expr, relax.Var) else ()
            if len(root) == 2 and root[1] == 0 and root[0] in index:
                return index[root[0]]
            return None

        linked = []
        for i, (_, op) in enumerate(calls):
            before = calls[i - 1][1] if i else None
            linked.append(
                before is not None and producer(op.x) == i - 1 and producer(before.x) is not None
                and "auto" not in (op.pipeline, before.pipeline)
                and all(isinstance(t, tvm.ir.expr.Constant) or t in self.weights.weights
                        for t in (op.masker_weight, op.masker_bias))
                and links(before.geometry(), before.pipeline, op.geometry(), op.pipeline,
                          self.across_grids))
        return {var: (position, [op for _, op in calls[i:i + position.consumers]],
                      calls[i - 1][0] if position.update else None)
                for i, ((var, _), position) in enumerate(zip(calls, chain_positions(
                    linked, [op.geometry().patches for _, op in calls]),
                                                             strict=True))
                if position.chained}

    def _root_of(self, value, var) -> tuple:
        """The buffer ``var`` views: (source var, tuple indices...)."""
        if _op_name(value) in _VIEWS and isinstance(value.args[0], relax.Var):
            return self.root.get(value.args[0], (value.args[0],))
        if isinstance(value, relax.TupleGetItem) and isinstance(value.tuple_value, relax.Var):
            return (*self.root.get(value.tuple_value, (value.tuple_value,)), int(value.index))
        if isinstance(value, relax.Var):
            return self.root.get(value, (value,))
        return (var,)

    def _use(self, var: relax.Var, position: float) -> None:
        root = self.root.get(var, (var,))
        self.last_use[root] = max(self.last_use.get(root, -1), position)

    def _free_after(self, value: relax.Expr, position: int) -> bool:
        """Whether the buffer ``value`` views may be overwritten by the call at
        ``position``: nothing reads it later and it is not the caller's."""
        if not isinstance(value, relax.Var):
            return False
        root = self.root.get(value, (value,))
        if root[0] in self.params and not self.donate_params:
            return False
        # reads of this buffer, of a part of it, or of a whole tuple holding it
        later = [use for key, use in self.last_use.items()
                 if key[: len(root)] == root or root[: len(key)] == key]
        return max(later, default=-1) <= position

    def _only_use(self, expr) -> relax.Expr | None:
        """The value bound to ``expr`` if nothing but its one reader uses it, else None."""
        if not isinstance(expr, relax.Var) or self.uses.get(expr, 0) != 1:
            return None
        return self.value_of.get(expr)

    def shortcut_conv(self, op: SparseBottleneck, block) -> tuple | None:
        """(weight OHWI, bias) of the 1x1 conv of the block input that is the projected
        shortcut and nothing else (module docstring), or None: the shortcut stays as given."""
        transposed = self._only_use(op.identity)
        if _permutation(transposed) != TO_NCHW:
            return None
        biased = self._only_use(transposed.args[0])
        if _op_name(biased) != "relax.add":
            return None
        for conv_var, bias in (biased.args, biased.args[::-1]):
            conv = self._only_use(conv_var)
            if _op_name(conv) == "relax.nn.conv2d" and self.weights.is_weight(bias) \
                    and self._conv1x1_of_input(conv, op.x, block.stride, block.out_channels) \
                    and int(np.prod(_shape(bias))) in (1, block.out_channels):
                return conv.args[1], bias
        return None

    def _conv1x1_of_input(self, conv: relax.Call, x: relax.Expr, stride: int,
                          channels: int) -> bool:
        a, weight = conv.attrs, conv.args[1]
        if not self.weights.is_weight(weight) or a.data_layout != "NHWC" \
                or a.kernel_layout != "OHWI" or int(a.groups) != 1 \
                or any(int(d) != 1 for d in a.dilation) or any(int(p) for p in a.padding) \
                or any(int(s) != stride for s in a.strides) \
                or _shape(weight)[:3] != (channels, 1, 1):
            return False
        source = conv.args[0]
        value = self.value_of.get(source) if isinstance(source, relax.Var) else None
        x_value = self.value_of.get(x) if isinstance(x, relax.Var) else None
        return (_permutation(value) == TO_NHWC and value.args[0].same_as(x)) or \
            (_permutation(x_value) == TO_NCHW and x_value.args[0].same_as(source))

    # -- helpers --------------------------------------------------------------------------
    def nhwc(self, expr: relax.Expr) -> relax.Expr:
        """``expr`` (NCHW) as NHWC: the tensor it is a transpose of, or a new transpose."""
        if isinstance(expr, relax.Var) and _permutation(self.value_of.get(expr)) == TO_NCHW:
            return self.visit_expr(self.value_of[expr].args[0])
        return self.builder_.emit(relax.op.permute_dims(self.visit_expr(expr), TO_NHWC))

    def visit_var_binding_(self, binding: relax.VarBinding) -> None:
        value = binding.value
        if isinstance(value, relax.TupleGetItem) and value.tuple_value in self.tuples \
                and isinstance(binding.var, relax.DataflowVar):
            # an item of a lowered block: its var directly, so later passes see the transpose
            # that produced it (CancelTransposePairs) instead of an alias
            self.set_var_remap(binding.var, self.tuples[value.tuple_value].fields[value.index])
            return
        if las_op_name(binding.value) is not None:
            lowered = self._lower(binding.var, binding.value)
            self.tuples[binding.var] = lowered
            emit = self.builder_.emit if isinstance(binding.var, relax.DataflowVar) \
                else self.builder_.emit_output
            self.set_var_remap(binding.var, emit(lowered))
            return
        super().visit_var_binding_(binding)

    # -- dispatch -------------------------------------------------------------------------
    def _lower(self, var: relax.Var, call: relax.Call) -> relax.Tuple:
        name = las_op_name(call)
        if name == SPARSE_BOTTLENECK:
            return self._lower_sparse_bottleneck(var, SparseBottleneck.from_call(call))
        raise ValueError(f"Unknown las op {name}; known: {SPARSE_BOTTLENECK}")

    def _lower_sparse_bottleneck(self, var: relax.Var, op: SparseBottleneck) -> relax.Tuple:
        where = op.name or f"block {self.blocks}"
        if op.pipeline == "auto":
            raise ValueError(f"{where}: block pipeline 'auto' was not resolved (run "
                             "transform.ChooseBlockPipelines first)")
        block = op.geometry()
        pipeline = get_pipeline(op.pipeline)
        downsample = self.shortcut_conv(op, block) \
            if block.projected and pipeline.computes_shortcut else None
        if downsample is not None:
            block = replace(block, shortcut_conv=True)
        steps = pipeline.steps_for(block)
        position, chain, before = self.chains.get(var, (ALONE, [op], None))
        if position.chained:
            steps = [chained_step(s, position) if s.name == "masker" else s for s in steps]
        x = self.nhwc(op.x)
        values = {"x": x, "unused": constant(np.zeros((1, 1)))}
        if downsample is None:
            values["shortcut"] = self._writable_shortcut(var, op, block, steps, x)
        weights = [op.masker_weight, op.masker_bias,
                   *(t for conv in (op.conv1, op.conv2, op.conv3) for t in conv.tensors()),
                   *(downsample or ()),
                   *(t for member in chain[1:] for t in (member.masker_weight,
                                                         member.masker_bias))]
        xp, value, as_arg = preparation(self.builder_, weights, self.visit_expr)
        params = block_params(op, xp, value)
        if downsample is not None:
            params.update(downsample_params(*downsample, block.out_channels, xp, value))
        if position.chained:
            params.update(chain_params(chain, xp, value))
            if position.update:
                values["chain_dirty"], values["chain_cache_in"] = self.chain_state[before]
        for name in sorted({n for s in steps for n in s.inputs if n in params}):
            values[name] = as_arg(params[name]())
        emitter = StepEmitter(self.builder_, self.kernels, str(self.blocks))
        values = emitter.run(steps, block, values)
        if position.consumers > 1:
            self.chain_state[var] = (values["flags"], values["chain_cache"])
        self.blocks += 1
        g = block.patches
        out = self.builder_.emit(relax.op.reshape(
            values[steps[-1].result], (g.batch, g.out_height, g.out_width, block.out_channels)))
        out = self.builder_.emit(relax.op.permute_dims(out, TO_NCHW))
        grid = self.builder_.emit(relax.op.reshape(values["flags"], (g.batch, *g.grid)))
        mask = self.builder_.emit(relax.op.astype(grid, "bool"))
        return relax.Tuple([out, mask])

    def _writable_shortcut(self, var, op: SparseBottleneck, block, steps, x) -> relax.Expr:
        """The given shortcut as NHWC, copied first where a step updates it in place and its
        buffer is read after the block (module docstring)."""
        shortcut = x if not block.projected else self.nhwc(op.identity)
        writes_shortcut = any(s.updates == "shortcut" for s in steps)
        # a projected block's steps read x while they write the shortcut: never the same
        # buffer, even where a pass made the shortcut a transpose of the tensor x is
        aliases_x = block.projected and shortcut.same_as(x)
        source = op.identity if block.projected else op.x
        if writes_shortcut and (aliases_x or not self._free_after(source, self.position[var])):
            size = int(np.prod(_shape(shortcut)))
            flat = self.builder_.emit(relax.op.reshape(shortcut, (size,)))
            gvar, _ = self.kernels.get("copy", size)
            copied = self.builder_.emit(relax.call_tir(gvar, [flat], out_ty=flat.ty),
                                        "shortcut_copy")
            shortcut = self.builder_.emit(relax.op.reshape(copied, _shape(shortcut)))
        return shortcut
