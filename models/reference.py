"""Reference sparse executor: plain PyTorch that computes only the active patches.

For each block: compute the patch mask, gather every active patch's input window with its 3x3
halo, run the residual branch on that window only, and scatter-add the result into the
shortcut. It equals the masked dense forward (``model.eval()(x)``) and is the numerical oracle
for every compiled kernel, and the naive sparse baseline in benchmarks.

Patches of all batch items are flattened into one list (``(batch, row, col)`` triples), the
layout the compiled kernels use too, and each patch is computed as the kernels compute it: a
tile of the grid's largest cell (:class:`las_compiler.geometry.PatchGeometry`) from the cell's
first pixel, over zero padding outside the map, cropped to the cell on scatter.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from ..geometry import PatchGeometry
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


def patch_geometry_of(block: DynamicBlock, x: torch.Tensor) -> PatchGeometry:
    """The patch geometry of ``block`` on input ``x`` (N, C, H, W)."""
    return PatchGeometry(x.shape[0], x.shape[2], x.shape[3], block.granularity, block.stride)


def _axis_index(axis, cells: torch.Tensor, length: int, scale: int, offset: int):
    """Per patch: ``start(cell) * scale + offset + arange(length)`` and the cell's extent."""
    starts = torch.tensor(axis.starts, dtype=torch.long)
    first = starts[cells] * scale + offset
    extent = starts[cells + 1] - starts[cells]
    return first[:, None] + torch.arange(length), extent


def gather_patches(x: torch.Tensor, index, geometry: PatchGeometry) -> torch.Tensor:
    """The active patches' input windows (P, C, span_h, span_w), zero outside the map."""
    g, (b, i, j) = geometry, index
    # rows of the padded map: the window starts one pixel above the tile, the padding adds one
    rows, _ = _axis_index(g.rows, i, g.span_h, g.stride, 0)
    cols, _ = _axis_index(g.cols, j, g.span_w, g.stride, 0)
    pad_bottom = max(int(rows.max()) - x.shape[2], 0)
    pad_right = max(int(cols.max()) - x.shape[3], 0)
    padded = F.pad(x, (1, pad_right, 1, pad_bottom))
    windows = padded[b[:, None, None], :, rows[:, :, None], cols[:, None, :]]
    return windows.permute(0, 3, 1, 2)


def scatter_add_patches(base: torch.Tensor, patches: torch.Tensor, index,
                        geometry: PatchGeometry) -> torch.Tensor:
    """base (N, C, Ho, Wo) + patches (P, C, tile_h, tile_w), each cropped to its cell."""
    g, (b, i, j) = geometry, index
    rows, row_extent = _axis_index(g.rows, i, g.tile_h, 1, 0)
    cols, col_extent = _axis_index(g.cols, j, g.tile_w, 1, 0)
    inside = ((torch.arange(g.tile_h) < row_extent[:, None])[:, :, None]
              & (torch.arange(g.tile_w) < col_extent[:, None])[:, None, :])
    shape = inside.shape
    where = (b[:, None, None].expand(shape)[inside], rows[:, :, None].expand(shape)[inside],
             cols[:, None, :].expand(shape)[inside])
    out = base.clone()
    out.permute(0, 2, 3, 1).index_put_(where, patches.permute(0, 2, 3, 1)[inside],
                                       accumulate=True)
    return out


@register_sparse_executor(Bottleneck)
def bottleneck_sparse_forward(block: Bottleneck, x: torch.Tensor) -> torch.Tensor:
    """gather(halo) -> conv1/bn1/relu -> conv2/bn2/relu -> conv3/bn3 -> scatter-add -> relu."""
    block.check_input(x)
    geometry = patch_geometry_of(block, x)
    index = active_patches(block.patch_mask(x))
    out = block.identity(x)
    if index[0].numel() > 0:
        window = gather_patches(x, index, geometry)
        inside = gather_patches(torch.ones_like(x[:, :1]), index, geometry)
        h = block.relu(block.bn1(block.conv1(window)))
        h = h * inside  # conv2's zero padding: conv1 outputs outside the map are zeros
        h = F.conv2d(h, block.conv2.weight, stride=block.stride)
        h = block.relu(block.bn2(h))
        h = block.bn3(block.conv3(h))
        out = scatter_add_patches(out, h, index, geometry)
    return torch.relu(out)


@torch.no_grad()
def sparse_forward(model: LASResNet, x: torch.Tensor):
    """Run a LAS network computing only active patches; equals ``model.eval()(x)`` (logits,
    or a backbone's feature maps)."""
    if model.training:
        raise ValueError("sparse_forward runs the eval-mode network; call model.eval() first")
    return model.head(model.body(x, lambda _i, block, h: sparse_block_forward(block, h)))


@torch.no_grad()
def sparse_block_forward(block: DynamicBlock, x: torch.Tensor) -> torch.Tensor:
    """Sparse execution of one block (eval mode)."""
    for block_type in type(block).__mro__:
        if block_type in _EXECUTORS:
            return _EXECUTORS[block_type](block, x)
    raise TypeError(f"no reference sparse executor for block type {type(block).__name__}")
