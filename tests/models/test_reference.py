"""The reference sparse executor equals the masked dense forward."""

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from las_compiler.geometry import patch_grid
from las_compiler.models import las_resnet50, sparse_block_forward, sparse_forward

from .helpers import force_mask, make_block, random_masker, randomise_bn

# ResNet-50 bottleneck shapes at 224x224: (stage, in_channels, planes, output size).
STAGES = [(1, 256, 64, 56), (2, 512, 128, 28), (3, 1024, 256, 14), (4, 2048, 512, 7)]


def divisors(n):
    return [s for s in range(1, n + 1) if n % s == 0]


def assert_block_equal(block, x):
    with torch.no_grad():
        dense = block(x)
        sparse = sparse_block_forward(block, x)
    torch.testing.assert_close(sparse, dense, rtol=1e-4, atol=1e-4)
    return dense


@pytest.mark.parametrize("stage, in_c, planes, size", STAGES)
@pytest.mark.parametrize("stride", [1, 2])
def test_every_dividing_s_of_each_stage(stage, in_c, planes, size, stride):
    """All S dividing the stage's map (1, 2, 4, 7, 8, 14, ...), real channel counts."""
    in_c = in_c // 2 if stride == 2 else in_c  # a stage's first block takes the previous width
    in_size = size * stride
    for s in divisors(size):
        block = make_block(in_c, planes, stride, s, seed=s)
        x = torch.randn(1, in_c, in_size, in_size)
        assert_block_equal(block, x)


@given(
    h=st.integers(1, 30),
    w=st.integers(1, 30),
    stride=st.sampled_from([1, 2]),
    batch=st.integers(1, 3),
    s_frac=st.floats(0, 1),
    rate=st.floats(0, 1),
    seed=st.integers(0, 2**16),
)
def test_any_size_any_s_any_mask(h, w, stride, batch, s_frac, rate, seed):
    """Odd and non-square maps, S that does not divide them (cells of unequal sizes),
    arbitrary patch patterns, batches."""
    h_out, w_out = (h - 1) // stride + 1, (w - 1) // stride + 1
    s = 1 + int(s_frac * (min(h_out, w_out) - 1))
    in_c = 16 if stride == 1 else 8
    block = make_block(in_c, 4, stride, s, seed=seed)
    gen = torch.Generator().manual_seed(seed)
    gh, gw = patch_grid(h_out, w_out, s)
    force_mask(block, (torch.rand(batch, gh, gw, generator=gen) < rate).float())
    assert_block_equal(block, torch.randn(batch, in_c, h, w, generator=gen))


@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("pattern", ["none", "one", "all", "corner"])
def test_zero_one_and_all_patches(stride, pattern):
    block = make_block(64, 16, stride, 4)
    x = torch.randn(3, 64, 28 * stride, 28 * stride)
    mask = torch.zeros(3, 7, 7)
    if pattern == "one":
        mask[1, 3, 2] = 1
    elif pattern == "all":
        mask[:] = 1
    elif pattern == "corner":
        mask[:, -1, -1] = 1
    force_mask(block, mask)
    out = assert_block_equal(block, x)
    with torch.no_grad():
        identity = torch.relu(block.identity(x))
    changed = (out != identity).any(dim=1)  # (N, H, W) pixels the branch touched
    if pattern == "none":
        assert not changed.any()
    if pattern == "one":
        assert changed[1, 12:16, 8:12].any() and not changed[0].any() and not changed[2].any()
        changed[1, 12:16, 8:12] = False
        assert not changed.any()  # nothing outside the one patch


@pytest.mark.parametrize("spec, size, batch", [
    ("4-4-2-1", (224, 224), 1),
    ("8-4-7-1", (192, 256), 2),
    ("1-1-1-1", (64, 64), 3),
    ("3-5-7-2", (99, 131), 1),
])
def test_whole_network_equal(spec, size, batch):
    torch.manual_seed(0)
    model = las_resnet50(spec)
    randomise_bn(model)
    for i, block in enumerate(model.dynamic_blocks()):
        random_masker(block, seed=i)
    model.eval()
    x = torch.randn(batch, 3, *size)
    with torch.no_grad():
        dense, stats = model.forward_with_stats(x)
    sparse = sparse_forward(model, x)
    scale = dense.abs().max()
    torch.testing.assert_close(sparse / scale, dense / scale, rtol=0, atol=2e-5)
    rates = [float(b.activation) for b in stats.blocks]
    assert 0 < sum(rates) < len(rates)  # masks are mixed, so skipping really happened


def test_sparse_forward_refuses_training_mode():
    with pytest.raises(ValueError, match="model.eval"):
        sparse_forward(las_resnet50().train(), torch.randn(1, 3, 64, 64))
