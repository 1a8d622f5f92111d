"""Transpose round trips vanish; other compositions become one transpose."""

import tvm
from tvm import relax

from las_compiler.transform import CancelTransposePairs


def _module(second_axes):
    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType((1, 8, 4, 6), "float32"))
    with bb.function("main", [x]):
        with bb.dataflow():
            a = bb.emit(relax.op.permute_dims(x, [0, 2, 3, 1]))
            b = bb.emit(relax.op.permute_dims(a, second_axes))
            out = bb.emit_output(relax.op.nn.relu(b))
        bb.emit_func_output(out)
    return bb.get()


def _ops(mod):
    return [b.value.op.name for blk in mod["main"].body.blocks for b in blk.bindings
            if isinstance(b.value, relax.Call) and isinstance(b.value.op, tvm.ir.Op)]


def test_round_trip_cancels():
    mod = relax.transform.CanonicalizeBindings()(CancelTransposePairs()(_module([0, 3, 1, 2])))
    assert _ops(mod) == ["relax.nn.relu"]
    relu = mod["main"].body.blocks[0].bindings[-1].value
    assert relu.args[0].same_as(mod["main"].params[0])


def test_other_composition_is_one_transpose():
    mod = CancelTransposePairs()(_module([0, 2, 1, 3]))  # NHWC -> NWHC: net (0, 3, 2, 1)
    assert _ops(mod) == ["relax.permute_dims", "relax.nn.relu"]
    perm = mod["main"].body.blocks[0].bindings[0].value
    assert [int(a) for a in perm.attrs.axes] == [0, 3, 2, 1]
