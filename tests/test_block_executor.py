"""Compiled block pipelines equal the PyTorch reference sparse executor."""

import numpy as np
import pytest
import torch
import tvm
from hypothesis import given, settings
from hypothesis import strategies as st

from las_compiler.block_executor import VARIANTS, BlockExecutor
from las_compiler.models import calibrate_block, sparse_block_forward
from las_compiler.target import host_target

from .models.helpers import force_mask, make_block


@pytest.fixture(scope="module")
def target():
    return host_target()


def run(executor, x):
    """Executor on a copy of x (in-place variants overwrite their input)."""
    xt = tvm.runtime.tensor(x.permute(0, 2, 3, 1).contiguous().numpy())
    return torch.from_numpy(executor.run(xt).numpy()).permute(0, 3, 1, 2)


# (in_channels, planes, stride, size, S, batch): few geometries, so compiled kernels are reused
# while hypothesis varies the masks; together they cover stride 1/2, downsample with stride 1,
# S = 1, S that does not divide the map, a single patch covering the map, and batch > 1.
GEOMETRIES = [(64, 16, 1, 12, 4, 2), (32, 16, 2, 13, 3, 1), (64, 32, 1, 9, 1, 1),
              (64, 16, 2, 16, 2, 2), (32, 16, 2, 14, 7, 2)]


@pytest.mark.parametrize("variant", ["fused", "halo", "whole", "unfused"])
@pytest.mark.parametrize("geometry", GEOMETRIES)
@settings(max_examples=6)
@given(rate=st.sampled_from([0.0, 0.4, 1.0]), seed=st.integers(0, 50))
def test_sparse_pipelines_any_mask(target, variant, geometry, rate, seed):
    in_c, planes, stride, size, s, batch = geometry
    block = make_block(in_c, planes, stride, s, seed=seed)
    x = torch.randn(batch, in_c, size, size, generator=torch.Generator().manual_seed(seed))
    x = x.relu()  # block inputs are post-ReLU in a network
    h_out = (size - 1) // stride + 1
    gh = -(-h_out // s)
    mask = (torch.rand(batch, gh, gh, generator=torch.Generator().manual_seed(seed)) < rate)
    force_mask(block, mask.float())
    expected = sparse_block_forward(block, x)
    executor = BlockExecutor(block, batch, size, size, target, variant)
    active = np.flatnonzero(mask.flatten().numpy()).astype("int32")
    xt = tvm.runtime.tensor(x.permute(0, 2, 3, 1).contiguous().numpy())
    executor.fix_active_cells(active)
    got = torch.from_numpy(executor.run(xt).numpy()).permute(0, 3, 1, 2)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)


def test_masker_conv1_any_mask(target):
    """S = 1 with the masker fused into conv1 (the only geometry it accepts)."""
    in_c, planes, stride, size, s, batch = GEOMETRIES[2]
    for seed, rate in [(0, 0.0), (1, 0.4), (2, 1.0)]:
        block = make_block(in_c, planes, stride, s, seed=seed)
        x = torch.randn(batch, in_c, size, size,
                        generator=torch.Generator().manual_seed(seed)).relu()
        mask = torch.rand(batch, size, size, generator=torch.Generator().manual_seed(seed)) < rate
        force_mask(block, mask.float())
        executor = BlockExecutor(block, batch, size, size, target, "masker_conv1")
        executor.fix_active_cells(np.flatnonzero(mask.flatten().numpy()))
        torch.testing.assert_close(run(executor, x), sparse_block_forward(block, x),
                                   rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("stride, s, size", [(1, 4, 28), (2, 2, 27), (1, 7, 14), (1, 1, 14)])
def test_pipeline_with_its_own_masker(target, variant, stride, s, size):
    if variant == "masker_conv1" and s != 1:
        pytest.skip("masker_conv1 is an S = 1 pipeline")
    in_c = 64 if stride == 1 else 32
    block = make_block(in_c, 16, stride, s, seed=3)
    ramp = torch.linspace(0, 2, size)  # spatially varied input, so patches differ
    x = (torch.randn(2, in_c, size, size) + ramp[:, None] * ramp).relu()
    calibrate_block(block, x, 0.5)  # a masker with mixed decisions on this input
    executor = BlockExecutor(block, 2, size, size, target, variant)
    got = run(executor, x)
    if variant == "dense":
        with torch.no_grad():
            expected = torch.relu(block.identity(x) + block.residual(x))
    else:
        expected = sparse_block_forward(block, x)
        mask = block.patch_mask(x)
        assert 0 < int(mask.sum()) < mask.numel()
        if variant != "masker_conv1":  # the one pipeline without a compaction
            assert executor.last_active == int(mask.sum())
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)


def test_bad_inputs_are_clear_errors(target):
    block = make_block(64, 16, 1, 8)
    with pytest.raises(ValueError, match="S=8 does not fit a 7x7 output map"):
        BlockExecutor(block, 1, 7, 7, target)
    with pytest.raises(ValueError, match="unknown variant 'sparse'"):
        BlockExecutor(block, 1, 16, 16, target, "sparse")
    with pytest.raises(ValueError, match="masker_conv1 needs S = 1 and stride 1"):
        BlockExecutor(block, 1, 16, 16, target, "masker_conv1")
    with pytest.raises(ValueError, match="eval-mode"):
        BlockExecutor(block.train(), 1, 16, 16, target)


@pytest.mark.parametrize("variant, kernels", [
    ("halo", {"masker", "compact", "halo_conv3x3", "conv1x1_scatter_add"}),
    ("fused", {"masker", "compact", "dilated_rows", "conv1", "gather_conv3x3",
               "conv1x1_scatter_add"}),
])
def test_profile_names_every_kernel_of_the_pipeline(target, variant, kernels):
    block = make_block(64, 16, 1, 4)
    executor = BlockExecutor(block, 1, 16, 16, target, variant)
    x = tvm.runtime.tensor(torch.rand(1, 16, 16, 64).numpy())
    profile = executor.profile(x, repeats=3)
    assert set(profile) == kernels | {"total"}
    assert all(v >= 0 for v in profile.values())
    assert executor.run(x) is not None  # profiling leaves the executor usable
