"""Emit a block pipeline's steps (``las_compiler.block_pipelines``) as Relax calls.

The kernels themselves say how they are called: a step's kernel PrimFunc lists its parameter
buffers, so the emitter reshapes each value to its parameter's static shape (NHWC maps vs flat
pixel rows: zero-copy views), infers output shapes by matching the kernel's symbolic sizes
(the patch count n, the row groups m) against its arguments, and types the call. A scan's
count becomes a symbolic Relax size through ``tensor_to_shape``, the one device-to-host sync
per work list.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
from tvm import relax, tirx

from ..block_pipelines import Scan, Step, scan_runs
from ..geometry import BlockGeometry
from .kernel_table import KernelTable


def _static(shape) -> tuple[int, ...] | None:
    if all(isinstance(d, tirx.IntImm | int) for d in shape):
        return tuple(int(d) for d in shape)
    return None


class StepEmitter:
    """Emits steps through one ``BlockBuilder``; ``label`` makes symbolic size names unique
    per block (``idx_3``: block 3's active patch count)."""

    def __init__(self, builder: relax.BlockBuilder, kernels: KernelTable, label: str):
        self.builder, self.kernels, self.label = builder, kernels, label

    def run(self, steps: list[Step], block: BlockGeometry,
            values: dict[str, relax.Expr]) -> dict[str, relax.Expr]:
        """Emit ``steps`` in order; ``values`` holds the named inputs (see the table's module
        docstring) and gains every value the steps produce."""
        values = dict(values)
        for run in scan_runs(steps):
            for step in run:
                missing = [name for name in step.inputs if name not in values]
                if missing:
                    raise ValueError(f"step {step.name!r} ({step.kernel}) reads {missing}, "
                                     "which no earlier step produced")
            if isinstance(run[0], Scan):
                self._scans(run, block, values)
            else:
                self._call(run[0], block, values)
        return values

    # -- one step -----------------------------------------------------------------------------
    def _kernel(self, step: Step, block: BlockGeometry):
        gvar, func = self.kernels.get(step.kernel, *step.args(block))
        buffers = list(func.params)  # typed parameters: shape and dtype of each buffer
        outputs = 0 if step.inplace is not None else len(step.outputs)
        if len(buffers) != len(step.inputs) + outputs:
            raise ValueError(f"step {step.name!r}: kernel {step.kernel} has {len(buffers)} "
                             f"parameters, the table gives {len(step.inputs)} inputs and "
                             f"{outputs} outputs")
        return gvar, buffers[: len(step.inputs)], buffers[len(step.inputs):]

    def _arguments(self, step: Step, params, values) -> tuple[list[relax.Expr], dict]:
        """The step's inputs fitted to the kernel's parameters, and the kernel's symbolic sizes
        bound to the arguments' Relax sizes."""
        args, sizes = [], {}
        for name, buffer in zip(step.inputs, params, strict=True):
            arg = self._fit(values[name], buffer, f"{step.name}: {name}")
            for dim, value in zip(buffer.shape, arg.ty.shape, strict=True):
                if isinstance(dim, tirx.Var) and dim not in sizes:
                    sizes[dim] = value
            args.append(arg)
        return args, sizes

    def _fit(self, value: relax.Expr, buffer, what: str) -> relax.Expr:
        """``value`` viewed with the parameter's shape when both are static and hold the same
        elements; otherwise it must already match."""
        have, want = _static(value.ty.shape), _static(buffer.shape)
        if have is not None and want is not None and have != want:
            if int(np.prod(have)) != int(np.prod(want)):
                raise ValueError(f"{what}: a {have} value for a {want} kernel parameter")
            return self.builder.emit(relax.op.reshape(value, want))
        if len(value.ty.shape) != len(buffer.shape):
            raise ValueError(f"{what}: rank {len(value.ty.shape)} value for a rank "
                             f"{len(buffer.shape)} kernel parameter")
        return value

    @staticmethod
    def _type(buffer, sizes: dict) -> relax.TensorType:
        """An output parameter's type: its symbolic sizes (plain variables in our kernels)
        replaced by the Relax sizes of the arguments that defined them."""
        shape = []
        for dim in buffer.shape:
            if isinstance(dim, tirx.Var):
                if dim not in sizes:
                    raise ValueError(f"output size {dim} is defined by no input of the kernel")
                dim = sizes[dim]
            elif not isinstance(dim, tirx.IntImm):
                raise ValueError(f"output size {dim} is an expression; kernels must size "
                                 "their outputs by a variable an input defines")
            shape.append(dim)
        return relax.TensorType(shape, str(buffer.dtype))

    def _call(self, step: Step, block: BlockGeometry, values: dict) -> None:
        gvar, params, outputs = self._kernel(step, block)
        args, sizes = self._arguments(step, params, values)
        if step.inplace is not None:
            updated = args[step.inplace]
            result = self.builder.emit(relax.call_tir_inplace(
                gvar, args, [step.inplace], out_ty=updated.ty), step.name)
            values[step.result] = result
            return
        types = [self._type(buffer, sizes) for buffer in outputs]
        call = relax.call_tir(gvar, args, out_ty=types if len(types) > 1 else types[0])
        result = self.builder.emit(call, step.name)
        if len(types) == 1:
            values[step.outputs[0]] = result
        else:
            for index, name in enumerate(step.outputs):
                values[name] = self.builder.emit(relax.TupleGetItem(result, index))

    def _scans(self, run: list[Scan], block: BlockGeometry, values: dict) -> None:
        """A run of scans, each carrying the lengths before it (``op.scan.work_list``), so
        the last one's counts become the run's symbolic sizes in one device-to-host read."""
        lists, carried = [], {}
        for slot, step in enumerate(run):
            # slot > 0: the kernel's ``carried`` argument and the counts so far as an input
            carrying = replace(
                step, args=lambda b, s=step, k=slot: (*s.args(b), *((k,) if k else ())),
                inputs=(*step.inputs, *carried), outputs=("list", "count"))
            gvar, params, outputs = self._kernel(carrying, block)
            args, sizes = self._arguments(carrying, params, {**values, **carried})
            list_type, count_type = (self._type(buffer, sizes) for buffer in outputs)
            both = self.builder.emit(
                relax.call_tir(gvar, args, out_ty=[list_type, count_type]), step.name)
            lists.append((step, list_type, self.builder.emit(relax.TupleGetItem(both, 0))))
            # int64: the shape dtype
            carried = {"carried counts": self.builder.emit(relax.TupleGetItem(both, 1))}
        counts = carried["carried counts"]
        lengths = [tirx.Var(f"{step.prefix}_{self.label}", "int64") for step in run]
        self.builder.match_cast(self.builder.emit(relax.op.tensor_to_shape(counts)),
                                relax.ShapeType(lengths))
        for (step, list_type, full), length in zip(lists, lengths, strict=True):
            # a kernel of ours rather than a Relax strided_slice: FuseOps may move a fused
            # slice above the match_cast that defines the length
            shape = _static(list_type.shape)
            prefix_kernel, prefix_args = (("active_prefix", (shape[0],)) if len(shape) == 1
                                          else ("row_groups_prefix", (shape[0],)))
            prefix_gvar, _ = self.kernels.get(prefix_kernel, *prefix_args)
            prefix_type = relax.TensorType((length, *shape[1:]), str(list_type.dtype))
            values[step.prefix] = self.builder.emit(
                relax.call_tir(prefix_gvar, [full], out_ty=prefix_type), step.prefix)
            if step.outputs:
                values[step.outputs[0]] = full
