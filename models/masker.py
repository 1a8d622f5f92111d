"""The LASNet masker: which output patches of a block are computed.

Matches the official LASNet code (``dyn_resnet.Masker`` and the detection ``resnet_sd.Masker``,
``mask_channel_group=1``) so its checkpoints load (attribute ``masker.conv2``) and give the same
masks on every map size (the grid rule is :mod:`las_compiler.geometry`'s):

* the block input is ``adaptive_avg_pool2d``-ed to the floor grid ``(Ho // S, Wo // S)`` of
  the block's *output* (skipped when that grid is the input map itself: S = 1, stride 1);
* a 1x1 conv with bias maps the pooled input to 2 logits per cell;
* eval: ``mask = logit0 >= logit1``; training: hard Gumbel-softmax over the 2 logits with a
  temperature, channel 0 is the mask (straight-through gradients);
* the cell mask is stretched to the output map with ``F.interpolate`` (nearest).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .granularity import conv_output_size, patch_grid

# Official initial bias: channel 0 at 5.0 and channel 1 at 1.0, so every patch starts active
# and a dense checkpoint loaded into a fresh LAS model computes the dense network. The official
# code leaves the weights at PyTorch's default init, which switches patches off wherever the
# input is large (a logit gap above 4); we start the weights at zero so "all on" holds for any
# input. Gradients still reach them (d logits / d W = pooled input), so training is unchanged.
INITIAL_BIAS_ON = 5.0
INITIAL_BIAS_OFF = 1.0


class Masker(nn.Module):
    """Predicts a patch mask for one block from the block's input.

    Parameters
    ----------
    in_channels
        Channels of the block input.
    mask_channel_group
        Must be 1: grouped channel masks (official ``mask_channel_group > 1``) mask channel
        groups separately, which none of our kernels execute.
    """

    def __init__(self, in_channels: int, mask_channel_group: int = 1):
        super().__init__()
        if mask_channel_group != 1:
            raise ValueError(
                f"mask_channel_group={mask_channel_group} is not supported: only 1 (one spatial "
                "mask shared by all channels) has sparse kernels"
            )
        self.in_channels = in_channels
        self.conv2 = nn.Conv2d(in_channels, 2, kernel_size=1, bias=True)
        with torch.no_grad():
            self.conv2.weight.zero_()
            self.conv2.bias[0] = INITIAL_BIAS_ON
            self.conv2.bias[1] = INITIAL_BIAS_OFF

    def pool(self, x: torch.Tensor, granularity: int, stride: int) -> torch.Tensor:
        """Average the block input over each cell's pooling window: (N, C, gh, gw)."""
        return pool_to_grid(x, granularity, stride)

    def logits(self, x: torch.Tensor, granularity: int, stride: int) -> torch.Tensor:
        """The 2 masker logits per patch: (N, 2, gh, gw)."""
        return self.conv2(self.pool(x, granularity, stride))

    def forward(
        self, x: torch.Tensor, granularity: int, stride: int, temperature: float = 1.0
    ) -> torch.Tensor:
        """Patch mask (N, gh, gw) as float 0/1: thresholded in eval, Gumbel in training."""
        logits = self.logits(x, granularity, stride)
        gh, gw = patch_grid(conv_output_size(x.shape[2], stride),
                            conv_output_size(x.shape[3], stride), granularity)
        assert logits.shape[2:] == (gh, gw), (logits.shape, gh, gw)
        if self.training:
            return F.gumbel_softmax(logits, tau=temperature, hard=True, dim=1)[:, 0]
        return (logits[:, 0] >= logits[:, 1]).to(x.dtype)


def pool_to_grid(x: torch.Tensor, granularity: int, stride: int) -> torch.Tensor:
    """The official masker's pooling: ``adaptive_avg_pool2d`` of the block input to the patch
    grid of the block's output, skipped where that grid is the input map itself."""
    grid = patch_grid(conv_output_size(x.shape[2], stride), conv_output_size(x.shape[3], stride),
                      granularity)
    if grid == tuple(x.shape[2:]):
        return x
    return F.adaptive_avg_pool2d(x, grid)


def upsample_mask(mask: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Nearest-upsample a patch mask (N, gh, gw) to the output map (N, 1, H, W), as the
    official code does (``F.interpolate``, float-exact cell boundaries)."""
    mask = mask[:, None]
    if tuple(mask.shape[2:]) == (height, width):
        return mask
    return F.interpolate(mask, size=(height, width))


def dilate_mask(mask_up: torch.Tensor, stride: int, in_height: int, in_width: int) -> torch.Tensor:
    """Input pixels a strided 3x3 conv reads for the active output pixels: (N, 1, Hin, Win).

    This is the region conv1 must compute (the "dilated mask"); same as the official
    ``ExpandMask`` (zero-insertion by the stride, then a 3x3 dilation).
    """
    if stride > 1:
        spread = mask_up.new_zeros(mask_up.shape[0], 1, in_height, in_width)
        spread[:, :, ::stride, ::stride] = mask_up
    else:
        spread = mask_up
    return F.max_pool2d(spread, 3, stride=1, padding=1)
