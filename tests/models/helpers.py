"""Small builders shared by the model tests."""

import torch

from las_compiler.models import Bottleneck


def random_masker(block, std: float = 1.0, bias: float = 0.0, seed: int = 0) -> None:
    """Give a masker random weights so masks are mixed instead of all-on."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        w = block.masker.conv2.weight
        w.copy_(torch.randn(w.shape, generator=gen) * std / w.shape[1] ** 0.5)
        block.masker.conv2.bias.copy_(torch.tensor([bias, 0.0]))


def randomise_bn(module: torch.nn.Module, seed: int = 0) -> None:
    """Non-trivial BN statistics, so BN folding and ordering mistakes show up."""
    gen = torch.Generator().manual_seed(seed)
    for m in module.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            c = m.num_features
            m.running_mean.copy_(torch.randn(c, generator=gen) * 0.1)
            m.running_var.copy_(torch.rand(c, generator=gen) + 0.5)
            m.weight.data.copy_(torch.rand(c, generator=gen) + 0.5)
            m.bias.data.copy_(torch.randn(c, generator=gen) * 0.1)


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
