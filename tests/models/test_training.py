"""FLOPs accounting, sparsity statistics, the sparsity loss and the fine-tuning loop."""

import torch
from torch import nn
from torch.utils.data import TensorDataset

from las_compiler.models import (
    FinetuneConfig,
    LASResNet,
    SparsityLoss,
    calibrate,
    finetune,
    las_resnet50,
)

from .helpers import force_mask


def hooked_dense_macs(model, x):
    """MACs of every conv and linear layer (maskers excluded), counted by forward hooks."""
    total = [0]

    def hook(module, inputs, output):
        if isinstance(module, nn.Conv2d):
            k = module.kernel_size[0] * module.kernel_size[1]
            total[0] += output[0].numel() * module.in_channels // module.groups * k
        else:
            total[0] += module.in_features * module.out_features

    handles = [m.register_forward_hook(hook) for n, m in model.named_modules()
               if isinstance(m, nn.Conv2d | nn.Linear) and "masker" not in n]
    with torch.no_grad():
        model(x)
    for h in handles:
        h.remove()
    return total[0]


def test_dense_flops_match_a_layer_by_layer_count():
    model = las_resnet50("4-4-2-1").eval()
    x = torch.randn(1, 3, 224, 224)
    conv_macs = hooked_dense_macs(model, x)
    assert abs(conv_macs / 1e9 - 4.09) < 0.01  # torchvision's documented 4.09 GFLOPS
    with torch.no_grad():
        _, stats = model.forward_with_stats(x)
    # our count adds what the official code adds: maskers, max-pool reads and average-pool
    extra = 56 * 56 * 64 * 9 + 2048
    extra += sum(4 * b.in_channels * int(s.mask.shape[1] * s.mask.shape[2])
                 for b, s in zip(model.dynamic_blocks(), stats.blocks, strict=True))
    assert stats.dense_flops == conv_macs + extra
    assert abs(float(stats.sparse_flops) - stats.dense_flops) < 1  # masker init: all on


def test_sparse_flops_count_active_pixels_and_the_halo():
    model = LASResNet([1, 1, 1, 1], granularity=2, base_channels=8, num_classes=10).eval()
    block = next(model.dynamic_blocks())  # stage 1: 16x16 map at 64x64 input, S=2 -> 8x8 grid
    mask = torch.zeros(1, 8, 8)
    mask[0, 0, 0] = 1  # one corner patch: 4 output pixels, halo 3x3 pixels inside the map
    mask[0, 4, 4] = 1  # one interior patch: 4 pixels, halo 4x4 = 16 pixels
    force_mask(block, mask)
    with torch.no_grad():
        _, stats = model.forward_with_stats(torch.randn(1, 3, 64, 64))
    s = stats.blocks[0]
    assert float(s.activation) == 8 / 256
    assert float(s.dilated_activation) == (9 + 16) / 256
    w, c_in, c_out = block.width, block.in_channels, block.out_channels
    expected = 4 * c_in * 64 + c_in * c_out * 256  # masker + dense downsample
    expected += c_in * w * 25 + (w * w * 9 + w * c_out) * 8
    assert abs(float(s.sparse_flops) - expected) < 1e-3 * expected


def test_sparsity_loss_bounds_anneal_and_gradients_reach_maskers():
    loss = SparsityLoss(target=0.5, total_epochs=9)
    lo, hi = loss.bounds(0)  # closed at the target first (official schedule) ...
    assert abs(lo - 0.5) < 1e-9 and abs(hi - 0.5) < 1e-9
    assert loss.bounds(3) == loss.bounds(9) == (0.15, 0.9)  # ... open after a third
    assert 0.15 < loss.bounds(1.5)[0] < 0.5 < loss.bounds(1.5)[1] < 0.9
    model = LASResNet([1, 1, 1, 1], granularity=1, base_channels=8, num_classes=10).train()
    _, stats = model.forward_with_stats(torch.randn(4, 3, 32, 32), temperature=1.0)
    value = loss(stats, epoch=0)
    value.backward()
    grads = [b.masker.conv2.bias.grad for b in model.dynamic_blocks()]
    assert value > 0 and all(g is not None and g.abs().sum() > 0 for g in grads)


def test_finetune_moves_flops_towards_the_target():
    torch.manual_seed(0)
    images = torch.randn(64, 3, 32, 32)
    labels = torch.randint(0, 10, (64,))
    model = LASResNet([1, 1, 1, 1], granularity=1, base_channels=8, num_classes=10)
    config = FinetuneConfig(epochs=3, batch_size=16, lr=0.01, masker_lr_mult=10,
                            flops_target=0.5, sparsity_weight=20.0)
    history = finetune(model, TensorDataset(images, labels), config)
    assert len(history.loss) == 12
    assert history.flops_ratio[0] > 0.9
    assert abs(history.flops_ratio[-1] - 0.5) < abs(history.flops_ratio[0] - 0.5) - 0.1
    assert not model.training  # handed back ready for inference


def test_calibrated_model_reports_its_flops_ratio():
    torch.manual_seed(0)
    model = las_resnet50("4-4-2-1").eval()
    x = torch.randn(8, 3, 112, 112)
    calibrate(model, 0.0, x)
    with torch.no_grad():
        _, stats = model.forward_with_stats(x)
    # all patches off: only the stem, maskers, downsample branches and the head remain
    blocks = list(model.dynamic_blocks())
    kept = sum(b.branch_flops((1, 1), (1, 1)).get("downsample", (0,))[0] for b in blocks)
    assert 0 < stats.flops_ratio < 0.15 and kept > 0
