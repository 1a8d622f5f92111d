"""On a machine with an NVIDIA GPU and the whole TVM: a network and every block pipeline
compiled for that GPU (``"cuda"``: TVM reads the arch from the device), exported with its
device binary, loaded back and run there, equal PyTorch. Skipped where there is no GPU (our
CI and development machines); ``scripts/gpu_check.sh`` is the check for GPU machines that
have only the TVM runtime."""

import numpy as np
import pytest
import torch

import las_compiler
from las_compiler.block_pipelines import PIPELINES
from las_compiler.models import LASResNet, calibrate, pin_mask, sparse_block_forward

from ..models.helpers import make_block


def _gpu_present() -> bool:
    import tvm

    return bool(tvm.cuda(0).exist)


pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not _gpu_present(), reason="needs an NVIDIA GPU (none here)")]


def test_network_on_the_gpu_equals_pytorch(tmp_path):
    from las_compiler.verify import compare_with_pytorch

    torch.manual_seed(0)
    model = LASResNet((2, 1, 2, 1), "4-2-1-2", num_classes=10, base_channels=16).eval()
    calibrate(model, 0.5, torch.randn(2, 3, 64, 80))
    x = torch.randn(1, 3, 64, 80)
    compiled = las_compiler.compile(model, x, "cuda", tuning_logs=False)
    loaded = las_compiler.load(compiled.export(tmp_path / "art"))
    assert loaded.metadata["device_code"]["format"] in ("fatbin", "ptx")
    agreement = compare_with_pytorch(loaded, model, x)
    assert agreement.masks_equal and agreement.max_abs_error <= 1e-4 * agreement.output_scale


@pytest.mark.parametrize("name", list(PIPELINES))
def test_every_block_pipeline_on_the_gpu(name):
    from las_compiler.block_pipelines import get_pipeline
    from las_compiler.compiler import compile_block
    from las_compiler.geometry import BlockGeometry, PatchGeometry, patch_grid

    in_c, planes, stride, size, s = 64, 16, 2, 16, 1 if name == "masker_conv1" else 2
    geometry = BlockGeometry(PatchGeometry(2, size, size, s, stride), in_c, planes, planes * 4,
                             projected=True)
    if not get_pipeline(name).applies(geometry):
        pytest.skip(f"{name} does not apply at S = {s}")
    block = make_block(in_c, planes, stride, s)
    h_out = (size - 1) // stride + 1
    x = torch.randn(2, in_c, size, size).relu()
    template = pin_mask(block, x, torch.zeros(2, *patch_grid(h_out, h_out, s)))
    compiled = compile_block(block, template.permute(0, 2, 3, 1), "cuda", name,
                             tuning_logs=False)
    mask = torch.rand(2, *patch_grid(h_out, h_out, s)) < 0.5
    x = pin_mask(block, x, mask.float())
    out, (got,) = compiled.run_with_masks(x.permute(0, 2, 3, 1).contiguous().numpy())
    np.testing.assert_array_equal(got, mask.numpy())
    expected = sparse_block_forward(block, x).permute(0, 2, 3, 1).numpy()
    np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-4)
