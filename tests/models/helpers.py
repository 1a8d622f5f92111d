"""Small builders shared by the model tests."""

import torch
import torch.nn.functional as F

from las_compiler.models import Bottleneck, randomise_bn


def random_masker(block, std: float = 1.0, bias: float = 0.0, seed: int = 0) -> None:
    """Give a masker random weights so masks are mixed instead of all-on."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        w = block.masker.conv2.weight
        w.copy_(torch.randn(w.shape, generator=gen) * std / w.shape[1] ** 0.5)
        block.masker.conv2.bias.copy_(torch.tensor([bias, 0.0]))


def make_block(in_channels, planes, stride, granularity, seed=0) -> Bottleneck:
    torch.manual_seed(seed)
    block = Bottleneck(in_channels, planes, stride, granularity)
    randomise_bn(block, seed)
    random_masker(block, seed=seed)
    return block.eval()


def force_mask(block, mask: torch.Tensor) -> None:
    """Make a block use a fixed (N, gh, gw) patch mask (both dense and sparse paths ask
    ``block.patch_mask``), to test exact patterns: none, one, all, or arbitrary patches."""
    block.patch_mask = lambda x, temperature=1.0: mask.to(x.dtype)


# -- restatements of the official LASNet eval forward (mask_channel_group = 1) ---------------
def official_bn(sd, h, name):
    return F.batch_norm(h, sd[f"{name}.running_mean"], sd[f"{name}.running_var"],
                        sd[f"{name}.weight"], sd[f"{name}.bias"], False, 0.0, 1e-5)


def official_stem(sd, x):
    h = F.relu(official_bn(sd, F.conv2d(x, sd["conv1.weight"], stride=2, padding=3), "bn1"))
    return F.max_pool2d(h, 3, 2, 1)


def official_bottleneck(sd, h, prefix, first, stride, mask_size, feature_size):
    """One official dynamic bottleneck: the masker pools to ``mask_size`` (skipped when that
    is already the map), a mask is upsampled to ``feature_size`` by nearest interpolation,
    and it gates conv3 before the residual add. Returns (output, the (N, gh, gw) mask)."""
    pooled = F.adaptive_avg_pool2d(h, mask_size) if mask_size[0] < h.shape[2] else h
    m = F.conv2d(pooled, sd[f"{prefix}.masker.conv2.weight"], sd[f"{prefix}.masker.conv2.bias"])
    mask = (m[:, 0:1] >= m[:, 1:2]).float()
    cells = mask[:, 0].bool()
    if mask.shape[2] < feature_size[0]:
        mask = F.interpolate(mask, size=feature_size)
    out = F.relu(official_bn(sd, F.conv2d(h, sd[f"{prefix}.conv1.weight"]), f"{prefix}.bn1"))
    out = F.relu(official_bn(sd, F.conv2d(out, sd[f"{prefix}.conv2.weight"], stride=stride,
                                          padding=1), f"{prefix}.bn2"))
    out = official_bn(sd, F.conv2d(out, sd[f"{prefix}.conv3.weight"]), f"{prefix}.bn3") * mask
    if first:
        h = official_bn(sd, F.conv2d(h, sd[f"{prefix}.downsample.0.weight"], stride=stride),
                        f"{prefix}.downsample.1")
    return F.relu(out + h), cells
