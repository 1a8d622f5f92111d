"""How kernels index a block's patches: PrimExprs for the numbers ``geometry`` tabulates.

A kernel knows a cell only at run time (its id comes from the compaction's list), so where a
cell starts, how far it extends, which cell an output pixel is in, and which input pixels it
pools are index expressions of that id. Each is the closed form of the official grid rule
(``ceil(i * H / g)``, ``y * g // H``, ``adaptive_avg_pool2d``'s ``floor(i * H / g)`` ..
``ceil((i + 1) * H / g)``) plus a ``Select`` for each of the few positions where PyTorch's float
nearest upsampling moves a boundary (:attr:`CellAxis.start_exceptions`); where S divides the
map they fold to ``i * S``. ``tests/test_geometry.py`` evaluates every expression at every
index against the tables.

Every helper also takes plain ints (it then returns ints from the tables), so tests and the
reference code can walk the same tiles the kernels do.
"""

from __future__ import annotations

import numpy as np
from tvm import tirx

from ..geometry import CellAxis, PatchGeometry


def _is_int(value) -> bool:
    return isinstance(value, int | np.integer)


def _corrected(expr, position, exceptions):
    for p, offset in exceptions:
        expr = expr + tirx.Select(position == p, offset, 0)
    return expr


def cell_start(axis: CellAxis, i):
    """First output pixel of cell ``i``."""
    if _is_int(i):
        return axis.start(int(i))
    if axis.uniform:
        return i * axis.tile
    return _corrected((i * axis.out_size + axis.cells - 1) // axis.cells, i,
                      axis.start_exceptions)


def cell_extent(axis: CellAxis, i):
    """Output pixels of cell ``i``."""
    if _is_int(i):
        return axis.extent(int(i))
    if axis.uniform:
        return axis.tile
    end = _corrected(((i + 1) * axis.out_size + axis.cells - 1) // axis.cells, i + 1,
                     axis.start_exceptions)
    return end - cell_start(axis, i)


def cell_of(axis: CellAxis, y):
    """Cell holding output pixel ``y``."""
    if _is_int(y):
        return int(axis.cell_of_pixels[int(y)])
    if axis.uniform:
        return y // axis.tile
    return _corrected(y * axis.cells // axis.out_size, y, axis.cell_exceptions)


def pool_start(axis: CellAxis, i):
    """First input pixel of cell ``i``'s pooling window."""
    if axis.in_size % axis.cells == 0:
        return i * (axis.in_size // axis.cells)
    return (i * axis.in_size) // axis.cells


def pool_extent(axis: CellAxis, i):
    """Input pixels of cell ``i``'s pooling window."""
    if axis.in_size % axis.cells == 0:
        return axis.in_size // axis.cells
    return ((i + 1) * axis.in_size + axis.cells - 1) // axis.cells - pool_start(axis, i)


class PatchIndex:
    """The index expressions of one block's kernels (see the module docstring).

    ``cell`` is a batch-flattened cell id, ``pixel`` a row-major position in the cell's
    ``tile_h x tile_w`` tile, ``(a, b)`` a position in its input window.
    """

    def __init__(self, geometry: PatchGeometry):
        self.g = geometry

    def _cell(self, cell) -> tuple:
        cells, gw = self.g.cells_per_image, self.g.cols.cells
        return cell // cells, cell % cells // gw, cell % gw

    def output_pixel(self, cell, pixel) -> tuple:
        """(batch, row, col) of tile pixel ``pixel`` of patch ``cell``."""
        batch, i, j = self._cell(cell)
        return (batch, cell_start(self.g.rows, i) + pixel // self.g.tile_w,
                cell_start(self.g.cols, j) + pixel % self.g.tile_w)

    def output_inside(self, cell, pixel):
        """Whether that tile pixel belongs to the cell (tiles of smaller cells stick out)."""
        _, i, j = self._cell(cell)
        return (pixel // self.g.tile_w < cell_extent(self.g.rows, i)) & (
            pixel % self.g.tile_w < cell_extent(self.g.cols, j))

    def window_pixel(self, cell, a, b) -> tuple:
        """(batch, row, col) of element (a, b) of the tile's ``span_h x span_w`` input window;
        it starts one pixel above and left of the tile (conv padding), so it may lie outside
        the map (see :meth:`window_inside`)."""
        batch, i, j = self._cell(cell)
        stride = self.g.stride
        return (batch, cell_start(self.g.rows, i) * stride + a - 1,
                cell_start(self.g.cols, j) * stride + b - 1)

    def window_inside(self, cell, a, b):
        _, row, col = self.window_pixel(cell, a, b)
        return (row >= 0) & (row < self.g.height) & (col >= 0) & (col < self.g.width)

    def pool_pixel(self, cell, a, b) -> tuple:
        """(batch, row, col) of element (a, b) of the cell's pooling window (in the input)."""
        batch, i, j = self._cell(cell)
        return batch, pool_start(self.g.rows, i) + a, pool_start(self.g.cols, j) + b

    def pool_inside(self, cell, a, b):
        _, i, j = self._cell(cell)
        return (a < pool_extent(self.g.rows, i)) & (b < pool_extent(self.g.cols, j))

    def pool_pixels(self, cell):
        """Input pixels cell ``cell`` averages."""
        _, i, j = self._cell(cell)
        return pool_extent(self.g.rows, i) * pool_extent(self.g.cols, j)

    def window_cells(self, axis: CellAxis, y):
        """(first, last) cell along ``axis`` whose tile's input window (:meth:`window_pixel`:
        ``span`` pixels from ``start * stride - 1``) holds input coordinate ``y``; first > last
        where none does. The cells whose start lies in ``[ceil((y + 2 - span) / stride),
        floor((y + 1) / stride)]``: starts grow with the cell, so they are a run."""
        stride = self.g.stride
        span = self.g.span_h if axis is self.g.rows else self.g.span_w
        lo = -((span - 2 - y) // stride)  # ceil((y + 2 - span) / stride)
        hi = (y + 1) // stride
        last_out = axis.out_size - 1
        if _is_int(y):
            first = 0 if lo <= 0 else cell_of(axis, min(lo - 1, last_out)) + 1
            last = cell_of(axis, min(hi, last_out)) if hi >= 0 else -1
            return first, last
        first = tirx.Select(lo <= 0, 0, cell_of(axis, tirx.min(tirx.max(lo - 1, 0), last_out))
                            + 1)
        last = cell_of(axis, tirx.min(tirx.max(hi, 0), last_out))
        return first, last

    def window_cells_most(self, axis: CellAxis) -> int:
        """The most cells any input coordinate's :meth:`window_cells` holds (static)."""
        size = self.g.height if axis is self.g.rows else self.g.width
        return max(1, max(last - first + 1
                          for first, last in (self.window_cells(axis, y) for y in range(size))))

    def cell_of_pixel(self, batch, row, col):
        """Cell id (batch-flattened) of output pixel (batch, row, col)."""
        return (batch * self.g.cells_per_image + cell_of(self.g.rows, row) * self.g.cols.cells
                + cell_of(self.g.cols, col))
