"""LowerLASOps: dispatch errors, and in-place scatter never clobbers a live shortcut."""

import numpy as np
import pytest
import torch
import tvm
from tvm import relax

from las_compiler.frontend import import_exported_program
from las_compiler.frontend.export import las_block_call
from las_compiler.models.blocks import Bottleneck
from las_compiler.phases import relax_pipeline
from las_compiler.target import host_target
from las_compiler.transform import ChooseBlockPipelines, LowerLASOps


def test_unknown_las_op_is_a_clear_error():
    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType((1, 16, 8, 8), "float32"))
    with bb.function("main", [x]):
        with bb.dataflow():
            y = bb.emit_output(relax.op.call_pure_packed("las.nope", x, ty_args=x.ty))
        bb.emit_func_output(y)
    with pytest.raises(ValueError, match="Unknown las op las.nope"):
        LowerLASOps(host_target())(bb.get())


def test_unresolved_auto_pipeline_is_a_clear_error():
    model = _ShortcutReusedLater("auto").eval()
    mod = import_exported_program(torch.export.export(model, (torch.randn(1, 3, 12, 10),)))
    with pytest.raises(ValueError, match="'auto' was not resolved"):
        LowerLASOps(host_target())(mod)
    resolved = ChooseBlockPipelines(host_target())(mod)
    assert "auto" not in resolved.script()


def test_wrong_pipeline_for_the_block_names_the_block():
    model = _ShortcutReusedLater("masker_conv1").eval()  # S = 2: masker_conv1 needs S = 1
    mod = import_exported_program(torch.export.export(model, (torch.randn(1, 3, 12, 10),)))
    with pytest.raises(ValueError, match="Bottleneck: block pipeline 'masker_conv1' needs"):
        ChooseBlockPipelines(host_target())(mod)


class _ShortcutReusedLater(torch.nn.Module):
    """A block whose input is read again after the block: its shortcut must not be updated
    in place."""

    def __init__(self, pipeline: str = "fused"):
        super().__init__()
        self.pipeline = pipeline
        torch.manual_seed(0)
        self.stem = torch.nn.Conv2d(3, 64, 3, padding=1)
        self.block = Bottleneck(64, 16, granularity=2).eval()
        for bn in (self.block.bn1, self.block.bn2, self.block.bn3):
            bn.running_mean.uniform_(-0.1, 0.1)
            bn.running_var.uniform_(0.5, 1.5)
        self.block.masker.conv2.weight.data.normal_(0, 0.3)
        self.block.masker.conv2.bias.data.zero_()

    def forward(self, x):
        h = torch.relu(self.stem(x))
        out, mask = las_block_call(self.block, h, self.pipeline)
        return out + 2 * h, mask


@pytest.mark.parametrize("pipeline", ["fused", "halo", "whole"])
def test_live_shortcut_is_copied_not_clobbered(pipeline):
    model = _ShortcutReusedLater(pipeline).eval()
    x = torch.randn(1, 3, 12, 10)
    with torch.no_grad():
        program = torch.export.export(model, (x,))
        expected, mask = model(x)
    assert 0 < mask.float().mean() < 1
    target = host_target()
    executable = tvm.compile(import_exported_program(program), target,
                             relax_pipeline=relax_pipeline(target))
    vm = relax.VirtualMachine(executable, tvm.cpu())
    out, got_mask = vm["main"](tvm.runtime.tensor(x.numpy()))
    np.testing.assert_array_equal(got_mask.numpy(), mask.numpy())
    np.testing.assert_allclose(out.numpy(), expected.numpy(), rtol=1e-4, atol=1e-4)
