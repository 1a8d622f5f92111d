"""Spatially dynamic residual blocks.

A :class:`DynamicBlock` owns a masker and a residual branch; its output is
``relu(identity(x) + mask * residual(x))`` where the mask switches SxS output patches. Subclasses
describe their branch (layers, where each runs, its cost); the masker, the mask bookkeeping,
the sparsity statistics and the S checks are shared, so a basic block or a RegNet-Y block only
adds its layers. Only the ResNet bottleneck exists today.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .granularity import check_granularity_fits, conv_output_size, patch_grid
from .masker import Masker, dilate_mask, upsample_mask


@dataclass
class BlockStats:
    """What one block did on one batch (training statistics and FLOPs accounting).

    ``activation`` is the fraction of output pixels computed (the mask rate r);
    ``dilated_activation`` the fraction of input pixels the first 1x1 conv must compute (the
    active patches plus their 3x3 halo). FLOPs count multiply-accumulates, as the LASNet code
    and the usual "4.1 GFLOPs" for ResNet-50 do. Tensors keep gradients in training.
    """

    name: str
    granularity: int
    stride: int
    output_hw: tuple[int, int]
    mask: torch.Tensor
    activation: torch.Tensor
    dilated_activation: torch.Tensor
    dense_flops: float
    sparse_flops: torch.Tensor


class DynamicBlock(nn.Module):
    """Base class: a residual block whose residual branch runs only on active patches.

    Subclasses set ``in_channels``, ``out_channels``, ``stride`` and implement
    :meth:`residual`, :meth:`identity` and :meth:`branch_flops`.
    """

    in_channels: int
    out_channels: int
    stride: int

    def __init__(self, in_channels: int, granularity: int, mask_channel_group: int = 1):
        super().__init__()
        if granularity < 1:
            raise ValueError(f"S={granularity} is not valid: S must be >= 1")
        self.granularity = granularity
        self.block_name = type(self).__name__  # replaced by the network's module path
        self.masker = Masker(in_channels, mask_channel_group)

    # -- what subclasses provide -------------------------------------------------------
    def residual(self, x: torch.Tensor) -> torch.Tensor:
        """The dense residual branch (before masking)."""
        raise NotImplementedError

    def identity(self, x: torch.Tensor) -> torch.Tensor:
        """The shortcut (always dense)."""
        raise NotImplementedError

    def branch_flops(self, in_hw: tuple[int, int], out_hw: tuple[int, int]) -> dict[str, tuple]:
        """Dense MACs per layer and the gate that scales them in sparse execution.

        Returns ``{layer: (macs, gate)}`` with gate "dilated" (conv at input resolution over the
        halo), "mask" (active output patches) or "dense" (always computed).
        """
        raise NotImplementedError

    # -- shared machinery --------------------------------------------------------------
    def output_size(self, height: int, width: int) -> tuple[int, int]:
        return conv_output_size(height, self.stride), conv_output_size(width, self.stride)

    def check_input(self, x: torch.Tensor) -> None:
        """Clear errors for inputs the block cannot run on (wrong rank, channels, or S)."""
        if x.ndim != 4:
            raise ValueError(
                f"{self.block_name}: expected an NCHW tensor, got shape {tuple(x.shape)}"
            )
        if x.shape[1] != self.in_channels:
            raise ValueError(
                f"{self.block_name}: expected {self.in_channels} input channels, got {x.shape[1]}"
            )
        h_out, w_out = self.output_size(x.shape[2], x.shape[3])
        check_granularity_fits(self.granularity, h_out, w_out, f"block {self.block_name}")

    def patch_mask(self, x: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
        """The (N, gh, gw) patch mask for input x (0/1 floats)."""
        return self.masker(x, self.granularity, self.stride, temperature)

    def _masked_forward(self, x: torch.Tensor, temperature: float):
        self.check_input(x)
        mask = self.patch_mask(x, temperature)
        mask_up = upsample_mask(mask, *self.output_size(x.shape[2], x.shape[3]))
        out = torch.relu(self.identity(x) + self.residual(x) * mask_up)
        return out, mask, mask_up

    def forward(self, x: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
        return self._masked_forward(x, temperature)[0]

    def forward_with_stats(
        self, x: torch.Tensor, temperature: float = 1.0
    ) -> tuple[torch.Tensor, BlockStats]:
        out, mask, mask_up = self._masked_forward(x, temperature)
        return out, self.stats(x, mask, mask_up)

    def stats(self, x: torch.Tensor, mask: torch.Tensor, mask_up: torch.Tensor) -> BlockStats:
        """Activation rates and dense/sparse MACs of this block for a batch."""
        h_in, w_in = x.shape[2], x.shape[3]
        h_out, w_out = mask_up.shape[2], mask_up.shape[3]
        activation = mask_up.mean()
        dilated = dilate_mask(mask_up, self.stride, h_in, w_in).mean()
        gh, gw = patch_grid(h_out, w_out, self.granularity)
        # Masker cost as the official code counts it: pooling + 1x1 conv (2C MACs + C bias adds).
        masker_flops = 4 * self.in_channels * gh * gw
        dense = float(masker_flops)
        sparse = activation.new_tensor(float(masker_flops))
        gates = {"dilated": dilated, "mask": activation}
        for macs, gate in self.branch_flops((h_in, w_in), (h_out, w_out)).values():
            dense += macs
            sparse = sparse + (macs * gates[gate] if gate in gates else macs)
        return BlockStats(self.block_name, self.granularity, self.stride, (h_out, w_out), mask,
                          activation, dilated, dense, sparse)


def conv1x1(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_planes, out_planes, kernel_size=1, stride=stride, bias=False)


class Bottleneck(DynamicBlock):
    """ResNet-v1.5 bottleneck (stride on the 3x3 conv) with torchvision's module names.

    Residual branch: conv1 (1x1) -> bn1 -> relu -> conv2 (3x3, stride) -> bn2 -> relu ->
    conv3 (1x1) -> bn3. conv1 runs at input resolution, so in sparse execution it covers the
    active patches' 3x3 halo ("dilated" gate); conv2 and conv3 cover the active patches.
    """

    expansion = 4

    def __init__(
        self,
        in_channels: int,
        planes: int,
        stride: int = 1,
        granularity: int = 1,
        base_width: int = 64,
        mask_channel_group: int = 1,
    ):
        super().__init__(in_channels, granularity, mask_channel_group)
        width = int(planes * (base_width / 64.0))
        self.in_channels = in_channels
        self.width = width
        self.out_channels = planes * self.expansion
        self.stride = stride
        self.conv1 = conv1x1(in_channels, width)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = conv1x1(width, self.out_channels)
        self.bn3 = nn.BatchNorm2d(self.out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or in_channels != self.out_channels:
            self.downsample = nn.Sequential(
                conv1x1(in_channels, self.out_channels, stride), nn.BatchNorm2d(self.out_channels)
            )

    def residual(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        return self.bn3(self.conv3(out))

    def identity(self, x: torch.Tensor) -> torch.Tensor:
        return x if self.downsample is None else self.downsample(x)

    def branch_flops(self, in_hw, out_hw):
        in_px, out_px = in_hw[0] * in_hw[1], out_hw[0] * out_hw[1]
        flops = {
            "conv1": (self.in_channels * self.width * in_px, "dilated"),
            "conv2": (self.width * self.width * 9 * out_px, "mask"),
            "conv3": (self.width * self.out_channels * out_px, "mask"),
        }
        if self.downsample is not None:
            flops["downsample"] = (self.in_channels * self.out_channels * out_px, "dense")
        return flops


@torch.no_grad()
def randomise_bn(module: nn.Module, seed: int = 0) -> None:
    """Non-trivial BN statistics and affine terms drawn from ``seed``: random-weight models
    (tests, the fuzzer, benchmarks) then exercise BN folding instead of an identity BN."""
    gen = torch.Generator().manual_seed(seed)
    for m in module.modules():
        if isinstance(m, nn.BatchNorm2d):
            c = m.num_features
            m.running_mean.copy_(torch.randn(c, generator=gen) * 0.1)
            m.running_var.copy_(torch.rand(c, generator=gen) + 0.5)
            m.weight.copy_(torch.rand(c, generator=gen) + 0.5)
            m.bias.copy_(torch.randn(c, generator=gen) * 0.1)
