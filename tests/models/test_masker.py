"""Masker semantics against the official LASNet formulas."""

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st

from las_compiler.models import Masker
from las_compiler.models.masker import dilate_mask, upsample_mask


def official_mask(masker, x, mask_size, feature_size):
    """The official dyn_resnet.Masker eval path (mask_channel_group=1, square maps)."""
    pooled = F.adaptive_avg_pool2d(x, mask_size) if mask_size < x.shape[2] else x
    logits = masker.conv2(pooled)
    mask = (logits[:, 0:1] >= logits[:, 1:2]).float()
    if mask.shape[2] < feature_size:
        mask = F.interpolate(mask, size=(feature_size, feature_size))
    return mask


def official_dilated(mask, stride):
    """The official ExpandMask: zero-insertion by the stride, then a 3x3 dilation."""
    if stride > 1:
        kernel = torch.zeros(1, 1, stride, stride)
        kernel[:, :, 0, 0] = 1
        mask = F.conv_transpose2d(mask, kernel, stride=stride)
    return F.conv2d(mask, torch.ones(1, 1, 3, 3), padding=1) > 0.5


def random_masker(channels, seed):
    torch.manual_seed(seed)
    m = Masker(channels).eval()
    torch.nn.init.normal_(m.conv2.weight, std=1.0)
    m.conv2.bias.data.zero_()
    return m


@pytest.mark.parametrize("size, stride, s", [(56, 1, 1), (56, 1, 4), (56, 1, 8), (28, 1, 7),
                                             (56, 2, 4), (28, 2, 2), (14, 2, 7), (14, 2, 1)])
def test_eval_mask_matches_official(size, stride, s):
    masker = random_masker(16, seed=size + s)
    x = torch.randn(2, 16, size, size)
    out_size = size // stride
    ours = upsample_mask(masker(x, s, stride), s, out_size, out_size)
    ref = official_mask(masker, x, out_size // s, out_size)
    assert torch.equal(ours, ref)
    official_dil = official_dilated(ref, stride)
    assert torch.equal(dilate_mask(ours, stride, size, size).bool(), official_dil)


def test_threshold_is_greater_or_equal():
    masker = Masker(4).eval()
    masker.conv2.weight.data.zero_()
    masker.conv2.bias.data[:] = torch.tensor([1.0, 1.0])  # tie -> active, as `>=` says
    assert masker(torch.randn(1, 4, 8, 8), 2, 1).eq(1).all()
    masker.conv2.bias.data[:] = torch.tensor([1.0, 1.0001])
    assert masker(torch.randn(1, 4, 8, 8), 2, 1).eq(0).all()


def test_initial_bias_switches_everything_on():
    masker = Masker(64).eval()
    assert masker.conv2.bias.tolist() == [5.0, 1.0]
    assert masker(torch.randn(2, 64, 28, 28) * 1e4, 4, 1).eq(1).all()  # for any input


def test_grouped_masks_are_rejected():
    with pytest.raises(ValueError, match="mask_channel_group=2 is not supported"):
        Masker(64, mask_channel_group=2)


@given(st.integers(1, 40), st.integers(1, 40), st.integers(1, 9), st.sampled_from([1, 2]))
def test_pooling_averages_each_cells_input_window(h, w, s, stride):
    x = torch.randn(1, 3, h, w, dtype=torch.float64)
    masker = Masker(3).double()
    pooled = masker.pool(x, s, stride)
    window = s * stride
    gh, gw = -(-((h - 1) // stride + 1) // s), -(-((w - 1) // stride + 1) // s)
    assert pooled.shape[2:] == (gh, gw)
    for i in range(gh):
        for j in range(gw):
            cell = x[0, :, i * window:(i + 1) * window, j * window:(j + 1) * window]
            torch.testing.assert_close(pooled[0, :, i, j], cell.mean(dim=(1, 2)))


def test_training_uses_hard_gumbel_with_temperature():
    masker = Masker(8).train()
    masker.conv2.weight.data.zero_()
    masker.conv2.bias.data[:] = torch.tensor([0.5, 0.0])  # P(on) = sigmoid(0.5/tau)
    x = torch.randn(64, 8, 16, 16, requires_grad=True)
    torch.manual_seed(0)
    mask = masker(x, 1, 1, temperature=1.0)
    assert set(mask.unique().tolist()) <= {0.0, 1.0}
    assert abs(mask.mean().item() - torch.sigmoid(torch.tensor(0.5)).item()) < 0.02
    mask.sum().backward()  # straight-through estimator: gradients reach the masker
    assert masker.conv2.bias.grad is not None and masker.conv2.bias.grad.abs().sum() > 0
    # The temperature shapes the straight-through gradient, not the hard samples' law.
    grads = {}
    for tau in (1.0, 0.2):
        masker.zero_grad()
        torch.manual_seed(1)
        sample = masker(x, 1, 1, temperature=tau)
        sample.sum().backward()
        grads[tau] = masker.conv2.bias.grad.clone()
        assert abs(sample.mean().item() - 0.6225) < 0.02
    assert not torch.allclose(grads[1.0], grads[0.2])
    masker.eval()
    assert masker(x, 1, 1).eq(1).all()
