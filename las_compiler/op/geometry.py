"""Patch geometry shared by kernel generators: grids, halo windows, strides."""

from __future__ import annotations

from dataclasses import dataclass


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
        s = self.granularity
        return -(-self.out_height // s), -(-self.out_width // s)

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
