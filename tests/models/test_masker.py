"""Masker semantics against the official LASNet formulas."""

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st

from las_compiler.models import Masker
from las_compiler.models.masker import dilate_mask, upsample_mask


def official_mask(masker, x, s, stride):
    """The official masker's eval path (``resnet_sd.Masker``; ``dyn_resnet.Masker`` is the same
    on the square maps it takes), mask_channel_group=1."""
    mask_size = (x.shape[2] // stride // s, x.shape[3] // stride // s)
    feature_size = (x.shape[2] // stride, x.shape[3] // stride)
    pooled = F.adaptive_avg_pool2d(x, mask_size) if mask_size[0] < x.shape[2] else x
    logits = masker.conv2(pooled)
    mask = (logits[:, 0:1] >= logits[:, 1:2]).float()
    if mask.shape[2] < feature_size[0]:
        mask = F.interpolate(mask, size=feature_size)
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


@pytest.mark.parametrize("height, width, stride, s", [
    (56, 56, 1, 1), (56, 56, 1, 4), (56, 56, 1, 8), (28, 28, 1, 7), (56, 56, 2, 4),
    (28, 28, 2, 2), (14, 14, 2, 7), (14, 14, 2, 1),
    (16, 16, 1, 7), (32, 32, 2, 7), (12, 12, 1, 7), (14, 14, 1, 3),  # S does not divide
    (50, 84, 1, 7), (100, 168, 2, 7), (25, 42, 1, 4), (200, 334, 1, 4),  # detection maps
    (82, 41, 1, 41),  # float nearest: row 41 belongs to cell 0
])
def test_eval_mask_matches_official(height, width, stride, s):
    masker = random_masker(16, seed=height + s)
    x = torch.randn(2, 16, height, width)
    out_h, out_w = height // stride, width // stride
    ours = upsample_mask(masker(x, s, stride), out_h, out_w)
    ref = official_mask(masker, x, s, stride)
    assert 0 < ref.mean() < 1
    assert torch.equal(ours, ref)
    official_dil = official_dilated(ref, stride)
    assert torch.equal(dilate_mask(ours, stride, height, width).bool(), official_dil)


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
    """adaptive_avg_pool2d windows: cell i averages rows floor(i*H/g) .. ceil((i+1)*H/g)-1."""
    ho, wo = (h - 1) // stride + 1, (w - 1) // stride + 1
    if s > min(ho, wo):
        return
    x = torch.randn(1, 3, h, w, dtype=torch.float64)
    pooled = Masker(3).double().pool(x, s, stride)
    gh, gw = ho // s, wo // s
    assert pooled.shape[2:] == (gh, gw)
    for i in range(gh):
        for j in range(gw):
            cell = x[0, :, i * h // gh:-(-(i + 1) * h // gh), j * w // gw:-(-(j + 1) * w // gw)]
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
