"""ChooseBlockPipelines: give every ``las.sparse_bottleneck`` call a concrete block pipeline.

The one place ``"auto"`` is resolved: for each block the latency predictor's fastest pipeline
among those that apply (``block_pipelines.auto_candidates`` of the device kind), on the
target's hardware profile (``TargetFamily.hardware``), at the activation rate the caller
expects, with
every kernel's weights arriving cold as they do inside a network (the module's blocks give the
footprint); on GPUs only among those whose kernels fit the target's limits. Pipelines the
caller named are checked against the block (S, stride) with an error
naming the block. The choice travels in the call's ``pipeline`` argument.
"""

from __future__ import annotations

import tvm
from tvm import relax
from tvm.relax.expr_functor import PyExprMutator, mutator

from ..block_pipelines import AUTO, auto_candidates, get_pipeline
from ..las_ops import SPARSE_BOTTLENECK, SparseBottleneck, las_blocks, las_op_name


@tvm.transform.module_pass(opt_level=0, name="ChooseBlockPipelines")
class ChooseBlockPipelines:
    """Resolve ``"auto"`` block pipelines (see the module docstring).

    Parameters
    ----------
    target
        The compile target; its hardware profile prices the candidates.
    expected_rate
        Activation rate the blocks are expected to run at.
    hardware
        A :class:`las_compiler.predictor.Hardware` instead of the target's profile.
    """

    def __init__(self, target: tvm.target.Target, expected_rate: float = 0.5, hardware=None,
                 candidates=None):
        if not 0.0 <= expected_rate <= 1.0:
            raise ValueError(f"expected activation rate must lie in [0, 1], got "
                             f"{expected_rate}")
        self.target, self.rate, self.hardware = target, expected_rate, hardware
        self.candidates = None if candidates is None else tuple(candidates)

    def _check_fits(self, op: SparseBottleneck) -> None:
        from ..schedules import pipeline_fits

        if not pipeline_fits(get_pipeline(op.pipeline), op.geometry(), self.target):
            raise ValueError(f"{op.name or 'block'}: block pipeline {op.pipeline!r} does not fit "
                             f"{self.target.attrs.get('arch', 'this GPU')} (a patch's "
                             "intermediates exceed its shared memory per block); choose "
                             "another pipeline or 'auto'")

    def transform_module(self, mod: tvm.IRModule, _ctx) -> tvm.IRModule:
        blocks = las_blocks(mod)
        for op in blocks:  # explicit choices first: a wrong one fails before any prediction
            if op.pipeline != AUTO:
                try:
                    get_pipeline(op.pipeline).steps_for(op.geometry())
                except ValueError as err:
                    raise ValueError(f"{op.name or 'block'}: {err}") from None
                self._check_fits(op)
        if not any(op.pipeline == AUTO for op in blocks):
            return mod
        from ..predictor.block import best_pipeline
        from ..predictor.network import network_footprint_bytes
        from ..schedules import check_target

        hw = self.hardware or check_target(self.target).hardware(self.target)
        footprint = network_footprint_bytes([op.layer() for op in blocks])

        from ..schedules import pipeline_fits

        weighed = self.candidates or auto_candidates(hw.kind)

        def choose(op: SparseBottleneck) -> str:
            geometry = op.geometry()  # a GPU's per-patch chains may exceed its limits
            candidates = tuple(c for c in weighed
                               if pipeline_fits(get_pipeline(c), geometry, self.target))
            return best_pipeline(hw, op.layer(), op.granularity, self.rate,
                                 candidates, footprint).pipeline

        rewriter = _Rewriter(mod, choose)
        for gvar, func in list(mod.functions_items()):
            if isinstance(func, relax.Function):
                rewriter.builder_.update_func(gvar, rewriter.visit_expr(func))
        return rewriter.builder_.get()


@mutator
class _Rewriter(PyExprMutator):
    def __init__(self, mod, choose):
        super().__init__(mod)
        self.choose = choose

    def visit_call_(self, call: relax.Call):
        if las_op_name(call) != SPARSE_BOTTLENECK:
            return super().visit_call_(call)
        op = SparseBottleneck.from_call(super().visit_call_(call))
        if op.pipeline != AUTO:
            return op.to_call()
        return op.replace(pipeline=self.choose(op)).to_call()
