"""torch.export with one las:: custom op per dynamic block; the eager semantics of the model;
the Relax module a frontend hands to the compiler."""

import pytest
import torch

from las_compiler.frontend import (
    ExportableLASResNet,
    export_las_resnet,
    import_torch,
    model_info,
)
from las_compiler.las_ops import SPARSE_BOTTLENECK, las_blocks, las_op_name
from las_compiler.models import LASResNet, calibrate


def small_model(snet="4-4-2-1", depths=(1, 1, 2, 1)):
    torch.manual_seed(0)
    model = LASResNet(depths, snet, num_classes=10, base_channels=16).eval()
    calibrate(model, 0.5, torch.randn(2, 3, 64, 64))
    return model


def _las_nodes(program):
    return [str(n.target) for n in program.graph.nodes
            if n.op == "call_function" and str(n.target).startswith("las.")]


def test_each_dynamic_block_is_one_las_node_and_eager_semantics_hold():
    model = small_model()
    x = torch.randn(1, 3, 64, 64)
    nodes = _las_nodes(export_las_resnet(model, x, static_blocks=[1]))
    assert nodes == ["las.sparse_bottleneck.default"] * 4  # 5 blocks, one static
    program = export_las_resnet(model, x)
    with torch.no_grad():
        logits, *masks = program.module()(x)
        assert torch.allclose(logits, model(x), atol=1e-5)  # the op's eager semantics
        assert len(masks) == 5 and all(m.dtype == torch.bool for m in masks)
        assert 0 < torch.stack([m.float().mean() for m in masks]).mean() < 1


def test_relax_module_carries_every_block_by_name():
    model = small_model()
    mod = import_torch(model, torch.randn(1, 3, 64, 64), static_blocks=[2],
                       pipelines=["fused", "halo", "auto", "dense"])
    names = [las_op_name(b.value) for block in mod["main"].body.blocks
             for b in block.bindings if las_op_name(b.value)]
    assert names == [SPARSE_BOTTLENECK] * 4
    blocks = las_blocks(mod)
    assert [(b.name, b.granularity, b.stride, b.pipeline) for b in blocks] == [
        ("layer1.0", 4, 1, "fused"), ("layer2.0", 4, 2, "halo"), ("layer3.1", 2, 1, "auto"),
        ("layer4.0", 1, 2, "dense")]
    assert blocks[1].grid == (2, 2) and blocks[1].mask_type.shape[0] == 1  # 8x8 map, S = 4
    # unpacking and packing again gives the same call (one argument layout, written once)
    again = las_blocks(tvm_module_with(blocks[1].replace(pipeline="whole")))
    assert again[0].pipeline == "whole" and again[0].granularity == 4
    info = model_info(mod)
    assert info["snet"] == "4-4-2-1" and info["outputs"][0] == "logits"
    assert [b["static"] for b in info["blocks"]] == [False, False, True, False, False]


def tvm_module_with(op):
    """A module holding one LAS call, built from the typed interface alone."""
    import tvm
    from tvm import relax

    bb = relax.BlockBuilder()
    x = relax.Var("x", op.x.ty)
    with bb.function("main", [x]):
        out = bb.emit(op.replace(x=x, identity=x if op.identity.same_as(op.x) else op.identity)
                      .to_call())
        bb.emit_func_output(out)
    return tvm.IRModule(bb.get().functions)


def test_errors_name_the_problem():
    model = small_model()
    with pytest.raises(ValueError, match="S=4 does not fit block layer4.0"):
        export_las_resnet(LASResNet((1, 1, 1, 1), "4-4-4-4", base_channels=16).eval(),
                          torch.randn(1, 3, 64, 64))
    with pytest.raises(ValueError, match="static_blocks \\[7\\] out of range"):
        ExportableLASResNet(model, static_blocks=[7])
    with pytest.raises(ValueError, match="3 block pipelines given for 5 dynamic blocks"):
        ExportableLASResNet(model, pipelines=["fused"] * 3)
    with pytest.raises(ValueError, match="eval-mode"):
        ExportableLASResNet(model.train())
