"""FoldConstantsOnHost: the module TVM's FoldConstant would make, without compiling anything."""

import numpy as np
import tvm
from tvm import relax

from las_compiler.transform import FoldConstantsOnHost


def _bn_folding_module():
    """What FoldBatchNorm + ConvertLayout leave for a conv's constant weights: w * s,
    beta - mean * s with s = gamma / sqrt(var + eps), and an OIHW -> OHWI permute."""
    rng = np.random.default_rng(0)
    const = lambda *shape: relax.const(rng.standard_normal(shape).astype("float32"))  # noqa: E731
    x = relax.Var("x", relax.TensorType((1, 8, 6, 6), "float32"))
    bb = relax.BlockBuilder()
    with bb.function("main", [x]):
        with bb.dataflow():
            root = const(4)
            var = bb.emit(relax.op.multiply(root, root))
            s = bb.emit(relax.op.divide(const(4), relax.op.sqrt(
                bb.emit(relax.op.add(var, relax.const(np.float32(1e-5)))))))
            w = bb.emit(relax.op.multiply(const(4, 8, 3, 3), relax.op.reshape(s, (4, 1, 1, 1))))
            shift = bb.emit(relax.op.subtract(const(4), relax.op.multiply(const(4), s)))
            ohwi = bb.emit(relax.op.permute_dims(w, [0, 2, 3, 1]))
            y = bb.emit(relax.op.nn.conv2d(x, relax.op.permute_dims(ohwi, [0, 3, 1, 2])))
            out = bb.emit_output(relax.op.add(y, relax.op.reshape(shift, (1, 4, 1, 1))))
        bb.emit_func_output(out)
    return relax.transform.Normalize()(bb.get())


def test_same_module_as_fold_constant_and_nothing_left_to_compile():
    mod = _bn_folding_module()
    expected = relax.transform.FoldConstant()(mod)
    ours = FoldConstantsOnHost()(mod)
    tvm.ir.assert_structural_equal(relax.transform.FoldConstant()(ours), expected)
    # every call on constants has gone (FoldConstant has nothing left to compile); the
    # conv on x and the add after it stay
    names = []
    relax.analysis.post_order_visit(ours["main"], lambda e: names.append(e.op.name) if isinstance(
        e, relax.Call) and isinstance(e.op, tvm.ir.Op) else None)
    assert sorted(names) == ["relax.add", "relax.nn.conv2d"]
