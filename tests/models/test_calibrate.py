"""calibrate() sets every block's activation rate close to the target."""

import pytest
import torch

from las_compiler.models import calibrate, las_resnet50, las_resnet101


@pytest.mark.parametrize("rate", [0.0, 0.25, 0.5, 0.75, 1.0])
def test_each_block_hits_the_target(rate):
    torch.manual_seed(0)
    model = las_resnet50("4-4-2-1").eval()
    reached = calibrate(model, rate, _images(112))
    assert len(reached) == 16
    assert all(abs(r - rate) <= 0.05 for r in reached), reached
    # and the masks really are what calibrate() reported, in a fresh forward
    with torch.no_grad():
        _, stats = model.forward_with_stats(_images(112))
    assert all(abs(float(b.activation) - rate) <= 0.05 for b in stats.blocks)


def _images(size):
    torch.manual_seed(0)
    return torch.randn(8, 3, size, size)


def test_generalises_to_held_out_images():
    torch.manual_seed(0)
    model = las_resnet101("8-4-7-1").eval()
    calibrate(model, 0.5, torch.randn(16, 3, 224, 224))
    with torch.no_grad():
        _, stats = model.forward_with_stats(torch.randn(4, 3, 224, 224))
    rates = [float(b.activation) for b in stats.blocks]
    assert abs(sum(rates) / len(rates) - 0.5) <= 0.1, rates


def test_per_block_targets_and_bad_rates():
    model = las_resnet50("2-2-2-1").eval()
    targets = [0.2, 0.8] * 8
    reached = calibrate(model, targets, torch.randn(8, 3, 96, 96))
    assert all(abs(r - t) <= 0.05 for r, t in zip(reached, targets, strict=True))
    with pytest.raises(ValueError, match="got 3 rates for 16 blocks"):
        calibrate(model, [0.5] * 3, torch.randn(1, 3, 64, 64))
    with pytest.raises(ValueError, match=r"\[1.5\]"):
        calibrate(model, 1.5, torch.randn(1, 3, 64, 64))
