"""Reference sparse executor: plain PyTorch that computes only the active patches.

For each block: compute the patch mask, gather every active patch's input window with its 3x3
halo, run the residual branch on that window only, and scatter-add the result into the
shortcut. It equals the masked dense forward (``model.eval()(x)``) and is the numerical oracle
for every compiled kernel, and the naive sparse baseline in benchmarks.

Patches of all batch items are flattened into one list (``(batch, row, col)`` triples), the
layout the compiled kernels use too. Border patches of maps that S does not divide are computed
as full patches over zero padding and cropped on scatter.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from .blocks import Bottleneck, DynamicBlock
from .las_resnet import LASResNet

_EXECUTORS: dict[type, Callable[[DynamicBlock, torch.Tensor], torch.Tensor]] = {}


def register_sparse_executor(block_type: type):
    """Register the reference sparse execution of a block type."""

    def wrap(fn):
        _EXECUTORS[block_type] = fn
        return fn

    return wrap


def active_patches(mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Indices (batch, row, col) of active patches of an (N, gh, gw) mask, row-major."""
    return mask.bool().nonzero(as_tuple=True)


def patch_windows(x: torch.Tensor, grid: tuple[int, int], step: int, span: int) -> torch.Tensor:
    """View of x as overlapping windows (N, C, gh, gw, span, span) with a 1-pixel zero halo.

    Window (i, j) covers input rows ``i*step - 1 .. i*step + span - 2`` (same for columns):
    the receptive field of a strided 3x3 conv over one output patch.
    """
    gh, gw = grid
    pad_bottom = (gh - 1) * step + span - 1 - x.shape[2]
    pad_right = (gw - 1) * step + span - 1 - x.shape[3]
    padded = F.pad(x, (1, max(pad_right, 0), 1, max(pad_bottom, 0)))
    return padded.unfold(2, span, step).unfold(3, span, step)[:, :, :gh, :gw]


def gather_patches(x: torch.Tensor, index, grid: tuple[int, int], step: int, span: int):
    """Gather the active patches' input windows: (P, C, span, span)."""
    b, i, j = index
    return patch_windows(x, grid, step, span)[b, :, i, j]


def scatter_add_patches(base: torch.Tensor, patches: torch.Tensor, index, granularity: int):
    """base (N, C, H, W) + patches (P, C, S, S) placed at their patch cells (cropped at borders)."""
    n, c, h, w = base.shape
    s = granularity
    gh, gw = -(-h // s), -(-w // s)
    grid = F.pad(base, (0, gw * s - w, 0, gh * s - h))
    cells = grid.reshape(n, c, gh, s, gw, s).permute(0, 2, 4, 1, 3, 5).contiguous()
    cells.index_put_(index, patches, accumulate=True)
    out = cells.permute(0, 3, 1, 4, 2, 5).reshape(n, c, gh * s, gw * s)
    return out[:, :, :h, :w]


@register_sparse_executor(Bottleneck)
def bottleneck_sparse_forward(block: Bottleneck, x: torch.Tensor) -> torch.Tensor:
    """gather(halo) -> conv1/bn1/relu -> conv2/bn2/relu -> conv3/bn3 -> scatter-add -> relu."""
    block.check_input(x)
    s, stride = block.granularity, block.stride
    h_out, w_out = block.output_size(x.shape[2], x.shape[3])
    mask = block.patch_mask(x)
    grid = (mask.shape[1], mask.shape[2])
    index = active_patches(mask)
    out = block.identity(x)
    if index[0].numel() > 0:
        step, span = s * stride, (s - 1) * stride + 3
        window = gather_patches(x, index, grid, step, span)
        inside = gather_patches(torch.ones_like(x[:1, :1]), (index[0] * 0, *index[1:]), grid,
                                step, span)
        h = block.relu(block.bn1(block.conv1(window)))
        h = h * inside  # conv2's zero padding: conv1 outputs outside the map are zeros
        h = F.conv2d(h, block.conv2.weight, stride=stride)
        h = block.relu(block.bn2(h))
        h = block.bn3(block.conv3(h))
        out = scatter_add_patches(out, h, index, s)
    return torch.relu(out)


@torch.no_grad()
def sparse_forward(model: LASResNet, x: torch.Tensor) -> torch.Tensor:
    """Run a LAS network computing only active patches; equals ``model.eval()(x)``."""
    if model.training:
        raise ValueError("sparse_forward runs the eval-mode network; call model.eval() first")
    h = model.stem(x)
    for block in model.dynamic_blocks():
        h = sparse_block_forward(block, h)
    return model.head(h)


@torch.no_grad()
def sparse_block_forward(block: DynamicBlock, x: torch.Tensor) -> torch.Tensor:
    """Sparse execution of one block (eval mode)."""
    for block_type in type(block).__mro__:
        if block_type in _EXECUTORS:
            return _EXECUTORS[block_type](block, x)
    raise TypeError(f"no reference sparse executor for block type {type(block).__name__}")
