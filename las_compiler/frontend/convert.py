"""ExportedProgram -> Relax, with ``las::*`` custom ops as namespaced Relax calls.

Each LAS op becomes ``R.call_pure_packed("las.<op>", tensors..., attrs as PrimValues)``: an
opaque, pure call that every generic Relax pass (constant folding, layout conversion, dead-code
elimination) leaves alone, and that ``transform.LowerLASOps`` later replaces with kernels for
the target. Nothing target-specific happens here.
"""

from __future__ import annotations

import torch
import tvm
from tvm import relax, tirx
from tvm.relax.frontend.torch import from_exported_program

from ..models.granularity import conv_output_size, patch_grid

LAS_OPS = ("las.masker", "las.sparse_bottleneck")
_SPARSE_TENSOR_ARGS = 18  # x, identity, mask, then (weight, gamma, beta, mean, var) x 3


def _tensor_args(node, importer, count: int) -> list[relax.Expr]:
    return [importer.env[arg] for arg in node.args[:count]]


def _convert_masker(node, importer):
    x, weight, bias = _tensor_args(node, importer, 3)
    granularity, stride = node.args[3:5]
    n, _, h, w = (int(d) for d in x.ty.shape)
    grid = patch_grid(conv_output_size(h, stride), conv_output_size(w, stride), granularity)
    return importer.block_builder.emit(relax.op.call_pure_packed(
        "las.masker", x, weight, bias, relax.prim_value(granularity), relax.prim_value(stride),
        ty_args=relax.TensorType((n, *grid), "bool")))


def _convert_sparse_bottleneck(node, importer):
    tensors = _tensor_args(node, importer, _SPARSE_TENSOR_ARGS)
    granularity, stride, eps = node.args[_SPARSE_TENSOR_ARGS:]
    attrs = [relax.prim_value(granularity), relax.prim_value(stride),
             relax.prim_value(tirx.FloatImm("float32", float(eps)))]
    identity = tensors[1]
    return importer.block_builder.emit(relax.op.call_pure_packed(
        "las.sparse_bottleneck", *tensors, *attrs, ty_args=identity.ty))


CUSTOM_CONVERT_MAP = {
    "masker.default": _convert_masker,
    "sparse_bottleneck.default": _convert_sparse_bottleneck,
}


def import_exported_program(program: torch.export.ExportedProgram):
    """Relax IRModule of an exported LAS network; weights become constants."""
    return from_exported_program(program, custom_convert_map=CUSTOM_CONVERT_MAP)


def las_op_name(call: relax.Expr) -> str | None:
    """``"las.<op>"`` if ``call`` is a LAS op call (see module docstring), else None."""
    if not isinstance(call, relax.Call) or not isinstance(call.op, tvm.ir.Op):
        return None
    if call.op.name != "relax.call_pure_packed" or not call.args:
        return None
    callee = call.args[0]
    if isinstance(callee, relax.ExternFunc) and str(callee.global_symbol).startswith("las."):
        return str(callee.global_symbol)
    return None

