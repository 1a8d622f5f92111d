"""The LASNet masker: which SxS output patches of a block are computed.

Matches the official LASNet code (``dyn_resnet.Masker``, ``mask_channel_group=1``) so its
checkpoints load (attribute ``masker.conv2``) and give the same masks:

* the block input is average-pooled to the patch grid of the block's *output*; in a stride-s
  block one cell pools an (s*S) x (s*S) input window. The official code pools with
  ``adaptive_avg_pool2d`` to ``output_size // S``, which equals this when S divides the map;
  for other sizes we use a ceil grid whose border cells average the pixels they do cover;
* a 1x1 conv with bias maps the pooled input to 2 logits per cell;
* eval: ``mask = logit0 >= logit1``; training: hard Gumbel-softmax over the 2 logits with a
  temperature, channel 0 is the mask (straight-through gradients).
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
        """Average the block input over each patch's input window: (N, C, gh, gw)."""
        window = granularity * stride
        if window == 1:
            return x
        # ceil_mode keeps partial border windows; with padding 0 PyTorch divides by the number
        # of pixels inside the map, i.e. border cells average what they cover.
        return F.avg_pool2d(x, window, stride=window, ceil_mode=True)

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


def upsample_mask(mask: torch.Tensor, granularity: int, height: int, width: int) -> torch.Tensor:
    """Nearest-upsample a patch mask (N, gh, gw) to the output map (N, 1, H, W)."""
    up = mask.repeat_interleave(granularity, dim=1).repeat_interleave(granularity, dim=2)
    return up[:, None, :height, :width]


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
