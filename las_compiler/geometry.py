"""Where a block's patches lie: the official LASNet patch grid, cell extents, pooling and conv
windows, and the block's channel shape.

The grid is the official one (``dyn_resnet.Masker`` and the detection ``resnet_sd.Masker``):
for an output map of H x W and granularity S there are ``H // S`` x ``W // S`` cells (a floor,
not a ceil), the masker average-pools the block *input* to that grid with PyTorch's
``adaptive_avg_pool2d`` windows, and the cell mask is stretched back to H x W with
``F.interpolate(mode="nearest")``. Where S divides the map every cell is S x S. Where it does
not (S = 7 on 16 x 16, every detection input), cells are about H / (H // S) pixels tall (8 x 8
on that map) with unequal sizes, and the pooled windows may overlap and differ from the cells.

Nearest upsampling is a float computation in PyTorch (``floorf(y * (float)g / H)``), and on
some sizes it differs from the exact ``y * g // H`` (82 rows, 2 cells: row 41 is in cell 0).
:class:`CellAxis` reproduces it bit for bit, and records where it differs from the closed
forms kernels index with (``las_compiler.op.indexing``): the exact formula plus the few rows
where float rounding moves a boundary.

Kernels treat each cell as a fixed ``tile_h x tile_w`` tile (the largest cell) anchored at the
cell's first pixel; pixels of the tile outside the cell are computed and dropped, so every
kernel keeps static loop extents.

Plain Python (no TVM import): the PyTorch models, the block-pipeline table, the latency
predictor and the kernels' index expressions all take their numbers from here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import numpy as np


def patch_grid(height: int, width: int, granularity: int) -> tuple[int, int]:
    """Patch grid of an H x W output map: ``H // S`` x ``W // S`` (the official floor grid).

    The one definition of the grid: the PyTorch models, the kernels, the LAS op's mask type
    and the predictor all ask here."""
    if granularity < 1 or granularity > min(height, width):
        raise ValueError(f"S={granularity} does not fit a {height}x{width} output map; valid S: "
                         f"1..{min(height, width)}")
    return height // granularity, width // granularity


def nearest_cells(size: int, cells: int) -> np.ndarray:
    """The cell of each of ``size`` pixels when ``cells`` values are nearest-upsampled to
    ``size``, exactly as PyTorch computes it: ``min(floorf(y * ((float)cells / size)),
    cells - 1)`` in float32 (``F.interpolate(..., size=size)``, mode "nearest", CPU and CUDA)."""
    if cells == size:
        return np.arange(size)
    scale = np.float32(cells) / np.float32(size)
    y = np.arange(size, dtype=np.float32)
    return np.minimum(np.floor(y * scale).astype(np.int64), cells - 1)


def _exceptions(actual, formula) -> tuple[tuple[int, int], ...]:
    """(position, actual - formula) wherever a table differs from its closed form."""
    return tuple((int(i), int(a - f)) for i, (a, f) in enumerate(zip(actual, formula,
                                                                      strict=True)) if a != f)


@dataclass(frozen=True)
class CellAxis:
    """One axis (rows or columns) of a block's patch grid.

    ``in_size`` is the block input's length along the axis, ``out_size`` the output map's
    (``(in_size - 1) // stride + 1``), ``cells`` the grid's (``out_size // S``).
    """

    in_size: int
    out_size: int
    cells: int

    def __post_init__(self):
        if not 1 <= self.cells <= self.out_size:
            raise ValueError(f"a grid of {self.cells} cells does not fit {self.out_size} pixels")
        counts = np.bincount(self.cell_of_pixels, minlength=self.cells)
        if counts.min() == 0:  # float rounding never does this below 2**23 pixels
            raise ValueError(f"nearest upsampling of {self.cells} cells to {self.out_size} "
                             "pixels leaves a cell without pixels")

    # -- tables (plain ints) -------------------------------------------------------------
    @cached_property
    def cell_of_pixels(self) -> np.ndarray:
        """Cell of each output pixel (PyTorch's nearest upsampling)."""
        return nearest_cells(self.out_size, self.cells)

    @cached_property
    def starts(self) -> tuple[int, ...]:
        """``cells + 1`` boundaries: cell i covers output pixels ``starts[i] .. starts[i+1]-1``."""
        first = np.searchsorted(self.cell_of_pixels, np.arange(self.cells), side="left")
        return (*(int(v) for v in first), self.out_size)

    @cached_property
    def tile(self) -> int:
        """Pixels of the largest cell: the extent kernels give every cell."""
        return int(np.diff(self.starts).max())

    @cached_property
    def smallest(self) -> int:
        return int(np.diff(self.starts).min())

    def pool_window(self, i: int) -> tuple[int, int]:
        """Input pixels ``[start, end)`` cell i averages (``adaptive_avg_pool2d``'s window)."""
        return (i * self.in_size) // self.cells, -(-((i + 1) * self.in_size) // self.cells)

    @cached_property
    def pool_tile(self) -> int:
        """Pixels of the largest pooling window."""
        return max(e - s for s, e in map(self.pool_window, range(self.cells)))

    @cached_property
    def uniform(self) -> bool:
        """Whether every cell has the same size (S divides the map)."""
        return self.smallest == self.tile

    # -- where the closed forms kernels index with need a correction -------------------
    @cached_property
    def start_exceptions(self) -> tuple[tuple[int, int], ...]:
        """(cell, offset) where ``starts`` differs from ``ceil(i * out_size / cells)``."""
        formula = [-(-(i * self.out_size) // self.cells) for i in range(self.cells)]
        return _exceptions(self.starts[:-1], formula)

    @cached_property
    def cell_exceptions(self) -> tuple[tuple[int, int], ...]:
        """(pixel, offset) where ``cell_of_pixels`` differs from ``y * cells // out_size``."""
        formula = [(y * self.cells) // self.out_size for y in range(self.out_size)]
        return _exceptions(self.cell_of_pixels, formula)

    def start(self, i: int) -> int:
        """First output pixel of cell ``i``."""
        return self.starts[i]

    def extent(self, i: int) -> int:
        """Pixels of cell ``i``."""
        return self.starts[i + 1] - self.starts[i]

@dataclass(frozen=True)
class PatchGeometry:
    """Where the patches of one block lie, for an NHWC input of (batch, height, width).

    Output patch (i, j) is the tile of ``tile_h x tile_w`` output pixels from
    ``(rows.start(i), cols.start(j))``, of which the cell's ``rows.extent(i) x
    cols.extent(j)`` are its own; its strided 3x3 conv reads the input window of ``span_h x
    span_w`` pixels from ``(rows.start(i)*stride - 1, cols.start(j)*stride - 1)``. The masker
    pools the cell's ``adaptive_avg_pool2d`` window instead (``rows.pool_window(i)``).
    """

    batch: int
    height: int
    width: int
    granularity: int
    stride: int
    rows: CellAxis = field(init=False, repr=False, compare=False)
    cols: CellAxis = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        if self.stride not in (1, 2):
            raise ValueError(f"stride {self.stride} is not supported (1 or 2)")
        if self.granularity < 1 or self.granularity > min(self.out_height, self.out_width):
            raise ValueError(
                f"S={self.granularity} does not fit a {self.out_height}x{self.out_width} output "
                f"map; valid S: 1..{min(self.out_height, self.out_width)}"
            )
        gh, gw = patch_grid(self.out_height, self.out_width, self.granularity)
        object.__setattr__(self, "rows", CellAxis(self.height, self.out_height, gh))
        object.__setattr__(self, "cols", CellAxis(self.width, self.out_width, gw))

    @property
    def out_height(self) -> int:
        return (self.height - 1) // self.stride + 1

    @property
    def out_width(self) -> int:
        return (self.width - 1) // self.stride + 1

    @property
    def grid(self) -> tuple[int, int]:
        return self.rows.cells, self.cols.cells

    @property
    def cells_per_image(self) -> int:
        return self.rows.cells * self.cols.cells

    @property
    def num_cells(self) -> int:
        return self.batch * self.cells_per_image

    @property
    def tile_h(self) -> int:
        return self.rows.tile

    @property
    def tile_w(self) -> int:
        return self.cols.tile

    @property
    def tile_pixels(self) -> int:
        """Output pixels of one patch tile (S*S where S divides the map)."""
        return self.tile_h * self.tile_w

    @property
    def span_h(self) -> int:
        """Input rows one tile's strided 3x3 conv reads, halo included."""
        return (self.tile_h - 1) * self.stride + 3

    @property
    def span_w(self) -> int:
        return (self.tile_w - 1) * self.stride + 3

    @property
    def window_pixels(self) -> int:
        return self.span_h * self.span_w

    @property
    def uniform(self) -> bool:
        """Whether every cell is S x S (S divides both sides of the output map)."""
        return self.rows.uniform and self.cols.uniform

    def cell_extents(self) -> np.ndarray:
        """(gh, gw) output pixels of each cell of one image."""
        return np.outer(np.diff(self.rows.starts), np.diff(self.cols.starts))


@dataclass(frozen=True)
class BlockGeometry:
    """One bottleneck block as its kernels see it: the patch geometry (input map, S, stride),
    channels (input ``in_channels`` -> conv1/conv2 ``width`` -> conv3 ``out_channels``) and
    whether the shortcut is a projection (a downsample conv) rather than the input itself.

    ``shortcut_conv``: the projection is a 1x1 conv of the block input with known weights, and
    the block computes it among its own kernels (after the masker, so its epilogue applies the
    ReLU only where the mask is off: no pass over the map afterwards). False where the
    shortcut arrives as a finished tensor."""

    patches: PatchGeometry
    in_channels: int
    width: int
    out_channels: int
    projected: bool
    shortcut_conv: bool = False

    @property
    def batch(self) -> int:
        return self.patches.batch

    @property
    def height(self) -> int:
        return self.patches.height

    @property
    def map_width(self) -> int:
        return self.patches.width

    @property
    def granularity(self) -> int:
        return self.patches.granularity

    @property
    def stride(self) -> int:
        return self.patches.stride

    @property
    def in_pixels(self) -> int:
        """Pixels of the input map (all images)."""
        return self.patches.batch * self.patches.height * self.patches.width

    @property
    def out_pixels(self) -> int:
        return self.patches.batch * self.patches.out_height * self.patches.out_width

    @property
    def out_size(self) -> int:
        """Elements of the block output (N * Ho * Wo * K)."""
        return self.out_pixels * self.out_channels
