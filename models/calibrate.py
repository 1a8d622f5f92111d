"""Calibrate masker biases to a target activation rate (for demos and benchmarks).

Random-weight networks have no learned masks; benchmarks still need blocks that run at a
chosen activation rate r. :func:`calibrate` shifts each masker's channel-0 bias so that a
fraction r of the patches on the given images is active. Blocks are calibrated in execution
order because each block's input depends on the masks of the blocks before it.

A masker that was never trained has zero weights (see masker.py) and scores every patch the
same, so no bias can split them: such maskers first get PyTorch's default conv init (from
torch's global RNG, so ``torch.manual_seed`` makes calibration reproducible).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from ..geometry import PatchGeometry
from .blocks import DynamicBlock
from .las_resnet import LASResNet


def _bias_shift_for_rate(margin: torch.Tensor, rate: float) -> float:
    """Shift d so that a fraction ``rate`` of ``d + shift >= 0`` holds (d = logit0 - logit1)."""
    values = torch.sort(margin.flatten().double(), descending=True).values
    n = values.numel()
    keep = int(round(rate * n))
    spread = float(values[0] - values[-1]) + 1.0
    if keep == 0:
        return -float(values[0]) - 1e-3 * spread
    if keep == n:
        return -float(values[-1]) + 1e-3 * spread
    # Midway between the last kept and the first dropped patch: robust to float rounding.
    return -0.5 * float(values[keep - 1] + values[keep])


@torch.no_grad()
def calibrate(
    model: LASResNet, rate: float | Sequence[float], images: torch.Tensor
) -> list[float]:
    """Set masker biases so each block's activation rate on ``images`` is close to ``rate``.

    Parameters
    ----------
    model
        The network; its masker biases are changed in place. Evaluated in eval mode.
    rate
        Target activation rate in [0, 1], one for all blocks or one per block.
    images
        Calibration batch (N, C, H, W). Precision is limited by the number of patches: a
        block with one patch per image can only hit multiples of 1/N.

    Returns
    -------
    list[float]
        The activation rate each block reaches on ``images`` afterwards.
    """
    blocks = list(model.dynamic_blocks())
    rates = [float(rate)] * len(blocks) if isinstance(rate, int | float) else list(rate)
    if len(rates) != len(blocks):
        raise ValueError(f"got {len(rates)} rates for {len(blocks)} blocks")
    bad = [r for r in rates if not 0.0 <= r <= 1.0]
    if bad:
        raise ValueError(f"activation rates must lie in [0, 1], got {sorted(set(bad))}")

    was_training = model.training
    model.eval()
    reached = []

    def run(index, block, h):
        reached.append(calibrate_block(block, h, rates[index]))
        return block(h)

    model.body(images, run)
    model.train(was_training)
    return reached


@torch.no_grad()
def calibrate_block(block: DynamicBlock, x: torch.Tensor, rate: float) -> float:
    """Set one block's masker bias so a fraction ``rate`` of its patches on ``x`` is active.

    Returns the activation rate reached (the block must be in eval mode).
    """
    block.check_input(x)
    weight = block.masker.conv2.weight
    if not weight.any():
        nn.init.kaiming_uniform_(weight, a=math.sqrt(5))  # nn.Conv2d's default init
    logits = block.masker.logits(x, block.granularity, block.stride)
    shift = _bias_shift_for_rate(logits[:, 0] - logits[:, 1], rate)
    block.masker.conv2.bias[0] += shift
    return float(block.patch_mask(x).mean())


@torch.no_grad()
def pin_mask(block: DynamicBlock, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Make ``block``'s masker decide exactly ``mask`` (N, gh, gw) on the returned input.

    The masker is set to read input channel 0 alone (logit0 = its pooled value, logit1 =
    0.5), and channel 0 of a copy of ``x`` is set to 1 on the pixels only an active cell's
    pooling window covers, 0 on those only an inactive cell's covers, and 0.5 on pixels two
    windows share (``adaptive_avg_pool2d`` windows overlap by a row or column where S does not
    divide the map): every window keeps at least one pixel of its own, so its mean is above
    0.5 exactly when the cell is active. The masker and everything after it still run; only
    their decision is known in advance. Benchmarks and tests of compiled blocks use it to run
    a chosen activation rate exactly. Changes the block's masker weights in place.
    """
    block.check_input(x)
    geometry = PatchGeometry(x.shape[0], x.shape[2], x.shape[3], block.granularity, block.stride)
    if tuple(mask.shape) != (x.shape[0], *geometry.grid):
        raise ValueError(f"mask shape {tuple(mask.shape)} does not match the block's patch "
                         f"grid {(x.shape[0], *geometry.grid)}")
    rows, cols = _window_owners(geometry.rows), _window_owners(geometry.cols)
    own = (rows[:, None] >= 0) & (cols[None, :] >= 0)
    marks = mask.to(x.dtype)[:, rows.clamp(min=0)][:, :, cols.clamp(min=0)]
    pinned = x.clone()
    pinned[:, 0] = torch.where(own, marks, torch.full_like(marks, 0.5))
    conv = block.masker.conv2
    conv.weight.zero_()
    conv.weight[0, 0] = 1.0
    conv.bias.copy_(torch.tensor([0.0, 0.5], dtype=conv.bias.dtype))
    return pinned


def _window_owners(axis) -> torch.Tensor:
    """Per input pixel of one axis: the one cell whose pooling window covers it, or -1 where
    two windows do."""
    covers = torch.zeros(axis.in_size, dtype=torch.long)
    owner = torch.full((axis.in_size,), -1, dtype=torch.long)
    for i in range(axis.cells):
        start, end = axis.pool_window(i)
        covers[start:end] += 1
        owner[start:end] = i
    owner = torch.where(covers == 1, owner, torch.full_like(owner, -1))
    if len(set(owner.tolist()) - {-1}) != axis.cells:  # not for any grid LASNet makes
        raise ValueError(f"pooling windows of {axis.cells} cells over {axis.in_size} pixels "
                         "leave a cell without a pixel of its own; its mask cannot be pinned")
    return owner
