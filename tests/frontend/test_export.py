"""torch.export with las:: custom ops: one node per op, eager semantics of the model."""

import pytest
import torch

from las_compiler.frontend import ExportableLASResNet, export_las_resnet, import_exported_program
from las_compiler.frontend.convert import las_op_name
from las_compiler.models import LASResNet, calibrate


def small_model(snet="4-4-2-1", depths=(1, 1, 2, 1)):
    torch.manual_seed(0)
    model = LASResNet(depths, snet, num_classes=10, base_channels=16).eval()
    calibrate(model, 0.5, torch.randn(2, 3, 64, 64))
    return model


def _las_nodes(program):
    return [str(n.target) for n in program.graph.nodes
            if n.op == "call_function" and str(n.target).startswith("las.")]


def test_each_dynamic_block_is_two_las_nodes_and_eager_semantics_hold():
    model = small_model()
    x = torch.randn(1, 3, 64, 64)
    nodes = _las_nodes(export_las_resnet(model, x, static_blocks=[1]))
    assert nodes.count("las.masker.default") == 4 and nodes.count(
        "las.sparse_bottleneck.default") == 4  # 5 blocks, one static
    program = export_las_resnet(model, x)
    with torch.no_grad():
        logits, *masks = program.module()(x)
        assert torch.allclose(logits, model(x), atol=1e-5)  # the ops' eager semantics
        assert len(masks) == 5 and all(m.dtype == torch.bool for m in masks)
        assert 0 < torch.stack([m.float().mean() for m in masks]).mean() < 1


def test_relax_module_has_namespaced_las_calls():
    model = small_model()
    mod = import_exported_program(export_las_resnet(model, torch.randn(1, 3, 64, 64)))
    names = []
    for block in mod["main"].body.blocks:
        names += [las_op_name(b.value) for b in block.bindings if las_op_name(b.value)]
    assert names.count("las.masker") == 5 and names.count("las.sparse_bottleneck") == 5


def test_errors_name_the_problem():
    model = small_model()
    with pytest.raises(ValueError, match="S=4 does not fit block layer4.0"):
        export_las_resnet(LASResNet((1, 1, 1, 1), "4-4-4-4", base_channels=16).eval(),
                          torch.randn(1, 3, 64, 64))
    with pytest.raises(ValueError, match="static_blocks \\[7\\] out of range"):
        ExportableLASResNet(model, static_blocks=[7])
    with pytest.raises(ValueError, match="eval-mode"):
        ExportableLASResNet(model.train())
