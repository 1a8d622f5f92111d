"""Where a block's patches lie: grids, halo windows, strides, and the block's channel shape.

Plain Python (no TVM): kernel generators call the index helpers inside TVMScript, where they
build PrimExprs; the block-pipeline table and the latency predictor use the same numbers.
"""

from __future__ import annotations

from dataclasses import dataclass


def patch_grid(height: int, width: int, granularity: int) -> tuple[int, int]:
    """Patch grid of an output map: ceil(H/S) x ceil(W/S); border patches may be partial.

    The one definition of the grid: the PyTorch models, the kernels, the LAS op's mask type
    and the predictor all ask here."""
    return -(-height // granularity), -(-width // granularity)


@dataclass(frozen=True)
class PatchGeometry:
    """Where the patches of one block lie, for an NHWC input of (batch, height, width).

    Output patch (i, j) covers output rows ``i*S .. i*S+S-1``; its strided 3x3 conv reads input
    rows ``i*S*stride - 1 .. i*S*stride + span - 2`` (``span = (S-1)*stride + 3``).
    """

    batch: int
    height: int
    width: int
    granularity: int
    stride: int

    def __post_init__(self):
        if self.granularity < 1 or self.granularity > min(self.out_height, self.out_width):
            raise ValueError(
                f"S={self.granularity} does not fit a {self.out_height}x{self.out_width} output "
                f"map; valid S: 1..{min(self.out_height, self.out_width)}"
            )
        if self.stride not in (1, 2):
            raise ValueError(f"stride {self.stride} is not supported (1 or 2)")

    @property
    def out_height(self) -> int:
        return (self.height - 1) // self.stride + 1

    @property
    def out_width(self) -> int:
        return (self.width - 1) // self.stride + 1

    @property
    def grid(self) -> tuple[int, int]:
        return patch_grid(self.out_height, self.out_width, self.granularity)

    @property
    def cells_per_image(self) -> int:
        gh, gw = self.grid
        return gh * gw

    @property
    def num_cells(self) -> int:
        return self.batch * self.cells_per_image

    @property
    def span(self) -> int:
        """Input rows (and columns) one patch's strided 3x3 conv reads, halo included."""
        return (self.granularity - 1) * self.stride + 3

    @property
    def step(self) -> int:
        """Input rows between the windows of neighbouring patches."""
        return self.granularity * self.stride

    # -- index expressions for kernels (called inside TVMScript; they build PrimExprs) -------
    def output_pixel(self, cell, pixel) -> tuple:
        """(batch, row, col) of pixel ``pixel`` (row-major in S x S) of patch cell ``cell``."""
        s, cells, gw = self.granularity, self.cells_per_image, self.grid[1]
        return cell // cells, cell % cells // gw * s + pixel // s, cell % gw * s + pixel % s

    def output_inside(self, cell, pixel):
        """Whether that output pixel lies in the map (border patches may stick out)."""
        _, row, col = self.output_pixel(cell, pixel)
        return (row < self.out_height) & (col < self.out_width)

    def window_pixel(self, cell, a, b) -> tuple:
        """(batch, row, col) of element (a, b) of the cell's span x span input window; the
        window starts one pixel above and left of the patch (conv padding), so it may lie
        outside the map (see :meth:`window_inside`)."""
        cells, gw, step = self.cells_per_image, self.grid[1], self.step
        return cell // cells, cell % cells // gw * step + a - 1, cell % gw * step + b - 1

    def window_inside(self, cell, a, b):
        _, row, col = self.window_pixel(cell, a, b)
        return (row >= 0) & (row < self.height) & (col >= 0) & (col < self.width)


@dataclass(frozen=True)
class BlockGeometry:
    """One bottleneck block as its kernels see it: the patch geometry (input map, S, stride),
    channels (input ``in_channels`` -> conv1/conv2 ``width`` -> conv3 ``out_channels``) and
    whether the shortcut is a projection (a downsample conv) rather than the input itself."""

    patches: PatchGeometry
    in_channels: int
    width: int
    out_channels: int
    projected: bool

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
